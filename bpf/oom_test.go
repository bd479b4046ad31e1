package bpf_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

// memCgroup is a memory-limited cgroup made by a test: cgroup v2 at
// /sys/fs/cgroup, or else the cgroup v1 memory hierarchy.
type memCgroup struct {
	dir string
	v2  bool
}

// newMemCgroup makes a cgroup whose tasks may use limit bytes of memory
// and no swap, and removes it on cleanup, after killing what is left in it.
func newMemCgroup(tb testing.TB, limit int64) *memCgroup {
	tb.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := "bpfst-" + hex.EncodeToString(b[:])
	var cg *memCgroup
	var files [][2]string // name, value, written in order
	limitBytes := strconv.FormatInt(limit, 10)
	switch {
	case cgroupListHas("/sys/fs/cgroup/cgroup.subtree_control", "memory"):
		cg = &memCgroup{dir: filepath.Join("/sys/fs/cgroup", name), v2: true}
		files = [][2]string{{"memory.max", limitBytes}, {"memory.swap.max", "0"}}
	case cgroupFileExists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
		cg = &memCgroup{dir: filepath.Join("/sys/fs/cgroup/memory", name)}
		files = [][2]string{{"memory.limit_in_bytes", limitBytes}, {"memory.memsw.limit_in_bytes", limitBytes}}
	default:
		kerneltest.Unavailable(tb, "no cgroup memory controller: neither cgroup v2 at /sys/fs/cgroup with memory "+
			"in its cgroup.subtree_control, nor a cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		kerneltest.Unavailable(tb, "cannot make a cgroup: "+err.Error())
	}
	tb.Cleanup(func() {
		if err := cg.remove(); err != nil {
			tb.Errorf("remove cgroup: %v", err)
		}
	})
	for _, f := range files {
		path := filepath.Join(cg.dir, f[0])
		if !cgroupFileExists(path) { // no swap accounting
			continue
		}
		if err := os.WriteFile(path, []byte(f[1]), 0); err != nil {
			tb.Fatalf("limit cgroup memory: %v", err)
		}
	}
	return cg
}

// add moves a process into the cgroup.
func (cg *memCgroup) add(pid int) error {
	return os.WriteFile(filepath.Join(cg.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// oomKills returns the kernel's count of OOM kills in the cgroup.
func (cg *memCgroup) oomKills() (int64, error) {
	file := "memory.events"
	if !cg.v2 {
		file = "memory.oom_control"
	}
	data, err := os.ReadFile(filepath.Join(cg.dir, file))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("no oom_kill count in " + file)
}

// remove kills what is left in the cgroup and removes it, waiting up to a
// few seconds for its tasks to go.
func (cg *memCgroup) remove() error {
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if procs, _ := os.ReadFile(filepath.Join(cg.dir, "cgroup.procs")); len(procs) > 0 {
			for _, f := range strings.Fields(string(procs)) {
				if pid, _ := strconv.Atoi(f); pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err = os.Remove(cg.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	return err
}

// cgroupListHas reports whether a cgroup file's list of words holds word.
func cgroupListHas(path, word string) bool {
	data, err := os.ReadFile(path)
	return err == nil && strings.Contains(" "+strings.Join(strings.Fields(string(data)), " ")+" ", " "+word+" ")
}

// cgroupFileExists reports whether a cgroup's file exists.
func cgroupFileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// loadOOM loads the oom collector with fresh shared maps.
func loadOOM(tb testing.TB) (*bpf.Shared, *bpf.OOM) {
	tb.Helper()
	return loadCollector(tb, bpf.RingOptions{}, bpf.LoadOOM)
}

// TestOOMKill runs a memory hog, a uniquely named copy of tail(1) reading
// /dev/zero (one line that never ends), in a cgroup limited to 32 MiB with
// no swap. The kernel must kill it, count one OOM kill in the cgroup, and
// the collector must record exactly one victim with its name and pid.
func TestOOMKill(t *testing.T) {
	sh, o := loadOOM(t)
	cg := newMemCgroup(t, 32<<20)
	tail, err := exec.LookPath("tail")
	if err != nil {
		kerneltest.Unavailable(t, "no tail(1) for a memory hog: "+err.Error())
	}
	hog, name := uniqueCopy(t, tail)

	var mu sync.Mutex
	var victims []bpf.OOMRecord
	var rec bpf.OOMRecord
	stop := drainAll(t, sh, func(r *bpf.Record) {
		if r.Kind == bpf.KindOOM && r.OOM(&rec) == nil && string(rec.Name()) == name {
			mu.Lock()
			victims = append(victims, rec)
			mu.Unlock()
		}
	})
	if err := o.Attach(); err != nil {
		t.Fatal(err)
	}

	// The shell waits in the test's cgroup until moved, then becomes the
	// hog: the pid stays the same.
	cmd := exec.Command("/bin/sh", "-c", `read go && exec "$0" /dev/zero`, hog)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	if err := cg.add(cmd.Process.Pid); err != nil {
		t.Fatalf("move hog into cgroup: %v", err)
	}
	stdin.Write([]byte("go\n"))
	select {
	case err = <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the hog was not killed within 10 s")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("hog ended with %v, want killed by SIGKILL", err)
	}
	kills, err := cg.oomKills()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Detach(); err != nil {
		t.Fatal(err)
	}
	stop()

	t.Logf("cgroup %s (v2 %v): oom_kill %d; %d records name %s", cg.dir, cg.v2, kills, len(victims), name)
	for _, v := range victims {
		t.Logf("victim pid %d tgid %d uid %d comm %s (hog pid %d)", v.PID, v.TGID, v.UID, v.Name(), cmd.Process.Pid)
	}
	if kills != 1 {
		t.Errorf("the kernel counted %d OOM kills in the cgroup, want 1", kills)
	}
	if len(victims) != 1 {
		t.Fatalf("%d OOM records name %s, want 1", len(victims), name)
	}
	v := victims[0]
	if pid := uint32(cmd.Process.Pid); v.PID != pid || v.TGID != pid || v.UID != uint32(os.Getuid()) {
		t.Errorf("victim %+v, want pid and tgid %d, uid %d", v, pid, os.Getuid())
	}
	l, err := sh.Ledger(bpf.ProgOOM)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("oom ledger %+v", l)
	if !l.Balanced() || l.Lost() != 0 || l.Emitted < 1 {
		t.Errorf("oom ledger %+v: want balanced, nothing lost", l)
	}
}

func TestDecodeOOM(t *testing.T) {
	b := make([]byte, bpf.OOMRecordSize)
	le := binary.LittleEndian
	le.PutUint32(b, uint32(bpf.KindOOM))
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[8:], 7)
	le.PutUint32(b[16:], 101)
	le.PutUint32(b[20:], 100)
	le.PutUint32(b[24:], 1000)
	copy(b[32:], "hog")
	var r bpf.Record
	if err := bpf.DecodeRecord(b, &r); err != nil {
		t.Fatal(err)
	}
	var o bpf.OOMRecord
	if err := r.OOM(&o); err != nil {
		t.Fatal(err)
	}
	if o.PID != 101 || o.TGID != 100 || o.UID != 1000 || string(o.Name()) != "hog" || o.TimeNS != 7 {
		t.Errorf("decoded %+v", o)
	}
	var tcp bpf.TCPRecord
	if err := r.TCP(&tcp); !errors.Is(err, bpf.ErrRecord) {
		t.Errorf("oom record decoded as tcp: %v", err)
	}
	if err := bpf.DecodeRecord(b[:len(b)-1], &r); !errors.Is(err, bpf.ErrRecord) {
		t.Errorf("short oom record: %v", err)
	}
}

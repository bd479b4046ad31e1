package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/internal/admin"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

// runningDaemon is a bpfstatd process started by a test, shipping to a loopback
// UDP receiver that keeps every line.
type runningDaemon struct {
	cmd    *exec.Cmd
	socket string
	stderr bytes.Buffer

	mu    sync.Mutex
	lines []string
}

func startDaemon(t *testing.T, args ...string) *runningDaemon {
	t.Helper()
	kerneltest.Require(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	d := &runningDaemon{socket: filepath.Join(t.TempDir(), "admin.sock")}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			d.mu.Lock()
			d.lines = append(d.lines, strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n")...)
			d.mu.Unlock()
		}
	}()
	args = append([]string{"--output", "udp://" + pc.LocalAddr().String(), "--admin-socket", d.socket,
		"--flush-interval", "200ms", "--log-format", "json"}, args...)
	d.cmd = exec.Command(binary, args...)
	d.cmd.Stderr = &d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cmd.Process.Kill(); d.cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := admin.Query(d.socket); err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not answer on %s within 10s; stderr:\n%s", d.socket, d.stderr.String())
		}
	}
}

// query runs a second bpfstatd with the given query flags.
func (d *runningDaemon) query(t *testing.T, args ...string) (stdout string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(binary, append(args, "--admin-socket", d.socket)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String() + errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// shipped sums the counter values of lines named metric carrying tag.
func (d *runningDaemon) shipped(metric, tag string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	total := 0
	for _, l := range d.lines {
		name, rest, ok := strings.Cut(l, ":")
		if !ok || name != metric || !strings.Contains(l, "|#") || !containsTag(l, tag) {
			continue
		}
		v, _, _ := strings.Cut(rest, "|")
		n, _ := strconv.Atoi(v)
		total += n
	}
	return total
}

func containsTag(line, tag string) bool {
	_, tags, _ := strings.Cut(line, "|#")
	for _, t := range strings.Split(tags, ",") {
		if t == tag {
			return true
		}
	}
	return false
}

// TestStatusDropsHealth starts the daemon, runs K uniquely named
// processes, and reads the running daemon's status, drop ledger and health
// from second invocations: the figures match what the test did.
func TestStatusDropsHealth(t *testing.T) {
	d := startDaemon(t)
	helper, name := helperBinary(t)
	const k = 40
	for range k {
		if err := exec.Command(helper).Run(); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); d.shipped("host.process.exec", "comm:"+name) < k && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if got := d.shipped("host.process.exec", "comm:"+name); got != k {
		t.Errorf("receiver saw %d execs of %s, want %d", got, name, k)
	}
	if got := d.shipped("host.process.exit", "comm:"+name); got != k {
		t.Errorf("receiver saw %d exits of %s, want %d", got, name, k)
	}
	time.Sleep(300 * time.Millisecond) // one more interval for the status
	// Self-telemetry carries the user-space ledger and the breaker.
	d.mu.Lock()
	var sawDrops, sawBreaker bool
	for _, l := range d.lines {
		sawDrops = sawDrops || (strings.HasPrefix(l, "bpfstatd.drops:0|c|#") && containsTag(l, "stage:send") && containsTag(l, "reason:failed"))
		sawBreaker = sawBreaker || strings.HasPrefix(l, "bpfstatd.breaker.open:0|g")
	}
	d.mu.Unlock()
	if !sawDrops || !sawBreaker {
		t.Errorf("self-telemetry: bpfstatd.drops{stage:send,reason:failed} %v, bpfstatd.breaker.open %v", sawDrops, sawBreaker)
	}

	out, code := d.query(t, "--status")
	if code != 0 || !strings.Contains(out, "collector process") || !strings.Contains(out, "3 programs attached") || !strings.Contains(out, "healthy") {
		t.Errorf("--status exit %d:\n%s", code, out)
	}
	out, code = d.query(t, "--status", "--json")
	var snap admin.Snapshot
	if err := json.Unmarshal([]byte(out), &snap); err != nil || code != 0 {
		t.Fatalf("--status --json exit %d, %v:\n%s", code, err, out)
	}
	var proc admin.CollectorStatus
	for _, c := range snap.Collectors {
		if c.Name == "process" {
			proc = c
		}
	}
	if snap.PID != d.cmd.Process.Pid || proc.Programs != 3 || proc.Events < 3*k || snap.RSSBytes == 0 || snap.Breaker != "closed" {
		t.Errorf("status %+v: want our pid, the process collector with at least %d events, an RSS, a closed breaker", snap, 3*k)
	}
	out, code = d.query(t, "--drops", "--json")
	var drops []admin.Drop
	if err := json.Unmarshal([]byte(out), &drops); err != nil || code != 0 {
		t.Fatalf("--drops --json exit %d, %v:\n%s", code, err, out)
	}
	sources := map[string]bool{}
	for _, dr := range drops {
		if dr.Stage == "kernel" && dr.Reason == "ring_full" {
			sources[dr.Source] = true
			if dr.Count != 0 {
				t.Errorf("ring full %d times for %s with a running reader", dr.Count, dr.Source)
			}
		}
	}
	if !sources["exec"] || !sources["exit"] || !sources["fork"] {
		t.Errorf("drop ledger lacks the process programs: %+v", drops)
	}
	if out, code := d.query(t, "--health"); code != 0 || strings.TrimSpace(out) != "healthy" {
		t.Errorf("--health exit %d: %q", code, out)
	}
}

// TestHealthKernelDrops shrinks the ring and slows the reader so that a
// burst of execs overflows it: --health must exit 1 and say why.
func TestHealthKernelDrops(t *testing.T) {
	d := startDaemon(t, "--collectors", "process", "--ring-size", strconv.Itoa(os.Getpagesize()), "--poll", "2s", "--wakeup-bytes", strconv.Itoa(os.Getpagesize()))
	helper, _ := helperBinary(t)
	for range 200 {
		if err := exec.Command(helper).Run(); err != nil {
			t.Fatal(err)
		}
	}
	var out string
	code := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, code = d.query(t, "--health"); code != 0 {
			break
		}
	}
	if code != 1 || !strings.Contains(out, "ring full") {
		t.Errorf("--health after overflowing the ring: exit %d, %q; want 1 naming the full ring", code, out)
	}
}

// TestQueryWithoutDaemon fails in one line when nothing listens.
func TestQueryWithoutDaemon(t *testing.T) {
	var stderr bytes.Buffer
	cmd := exec.Command(binary, "--health", "--admin-socket", filepath.Join(t.TempDir(), "none.sock"))
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "not running") {
		t.Errorf("--health without a daemon: %v, %q", err, stderr.String())
	}
}

// TestCapabilitiesAfterStart reads the running daemon's capability sets:
// only CAP_BPF and CAP_NET_ADMIN remain, in every set that bounds it.
func TestCapabilitiesAfterStart(t *testing.T) {
	d := startDaemon(t)
	want := uint64(1)<<unix.CAP_BPF | uint64(1)<<unix.CAP_NET_ADMIN
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.HasPrefix(k, "Cap") {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			sets[k] = n
		}
	}
	for set, w := range map[string]uint64{"CapEff": want, "CapPrm": want, "CapBnd": want, "CapInh": 0, "CapAmb": 0} {
		if got, ok := sets[set]; !ok || got != w {
			t.Errorf("%s = %#x, want %#x", set, got, w)
		}
	}
	// Every thread, not only the main one.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", d.cmd.Process.Pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", d.cmd.Process.Pid, task.Name()))
		if err == nil && !strings.Contains(string(b), fmt.Sprintf("CapEff:\t%016x", want)) {
			t.Errorf("thread %s keeps other capabilities", task.Name())
		}
	}
	if out, code := d.query(t, "--health"); code != 0 {
		t.Errorf("daemon unhealthy after dropping capabilities: %s", out)
	}
}

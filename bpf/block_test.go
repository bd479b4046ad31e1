package bpf_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
	"golang.org/x/sys/unix"
)

// loopDevice attaches a new loop device to a temporary file of size bytes
// and returns its name ("loop3") and number; the test's cleanup detaches it.
func loopDevice(tb testing.TB, size int64) (name string, dev bpf.Dev) {
	tb.Helper()
	backing, err := os.Create(filepath.Join(tb.TempDir(), "disk"))
	if err != nil {
		tb.Fatal(err)
	}
	defer backing.Close() // the loop device keeps its own reference
	if err := backing.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		kerneltest.Unavailable(tb, "no loop devices: open /dev/loop-control: "+err.Error())
	}
	defer unix.Close(ctl)
	for range 10 { // another process may take the free device first
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			tb.Fatalf("find a free loop device: %v", err)
		}
		name = "loop" + strconv.Itoa(n)
		fd, err := unix.Open("/dev/"+name, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			tb.Fatalf("open loop device: %v", err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		copy(cfg.Info.File_name[:], backing.Name())
		err = unix.IoctlLoopConfigure(fd, &cfg)
		if errors.Is(err, unix.EBUSY) {
			unix.Close(fd)
			continue
		}
		if err != nil {
			unix.Close(fd)
			tb.Fatalf("configure %s: %v", name, err)
		}
		tb.Cleanup(func() {
			if err := unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0); err != nil {
				tb.Errorf("detach %s: %v", name, err)
			}
			unix.Close(fd)
		})
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			tb.Fatal(err)
		}
		return name, bpf.MakeDev(unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	tb.Fatal("no free loop device after 10 tries")
	return "", 0
}

// diskStat is what /sys/block/<dev>/stat says about requests.
type diskStat struct {
	completed uint64 // reads, writes, discards and flushes completed
	flushes   uint64 // flushes completed
	inFlight  uint64
}

// parseDiskStat reads the fields of /sys/block/<dev>/stat, as laid out in
// the kernel's Documentation/block/stat.rst: 1 reads completed, 5 writes
// completed, 9 requests in flight, 12 discards completed (since 4.18),
// 16 flushes completed (since 5.5).
func parseDiskStat(s string) (diskStat, error) {
	f := strings.Fields(s)
	if len(f) < 11 {
		return diskStat{}, fmt.Errorf("parse disk stat %q: %d fields", s, len(f))
	}
	var st diskStat
	for i, field := range f {
		n, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			return diskStat{}, fmt.Errorf("parse disk stat field %d: %w", i+1, err)
		}
		switch i + 1 {
		case 1, 5, 12:
			st.completed += n
		case 16:
			st.completed += n
			st.flushes = n
		case 9:
			st.inFlight = n
		}
	}
	return st, nil
}

func TestParseDiskStat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want diskStat
	}{
		{"  10 1 80 5   20 2 160 9    3 7 14", diskStat{completed: 30, inFlight: 3}},
		{"10 1 80 5 20 2 160 9 0 7 14 4 0 32 1", diskStat{completed: 34}},
		{"10 1 80 5 20 2 160 9 0 7 14 4 0 32 1 6 2", diskStat{completed: 40, flushes: 6}},
	} {
		got, err := parseDiskStat(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseDiskStat(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "1 2 3", "1 2 3 4 5 6 7 8 9 10 x"} {
		if _, err := parseDiskStat(bad); err == nil {
			t.Errorf("parseDiskStat(%q) accepted", bad)
		}
	}
}

// quietDiskStat waits until disk name has nothing in flight and its count
// of completed requests holds still, and returns its stat.
func quietDiskStat(tb testing.TB, name string) diskStat {
	tb.Helper()
	var last diskStat
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile("/sys/block/" + name + "/stat")
		if err != nil {
			tb.Fatal(err)
		}
		st, err := parseDiskStat(string(b))
		if err != nil {
			tb.Fatal(err)
		}
		if st.inFlight == 0 && st == last {
			return st
		}
		last = st
	}
	tb.Fatalf("%s did not become idle: %+v", name, last)
	return last
}

// loadBlock loads the block collector with fresh shared maps.
func loadBlock(tb testing.TB) (*bpf.Shared, *bpf.Block) {
	tb.Helper()
	return loadCollector(tb, bpf.RingOptions{}, bpf.LoadBlock)
}

// blockProbe reads a loop device's histogram and its stat together, once
// the device is idle.
type blockProbe struct {
	tb    testing.TB
	b     *bpf.Block
	name  string
	dev   bpf.Dev
	hists map[bpf.Dev]bpf.Hist
}

func (p *blockProbe) read() (bpf.Hist, diskStat) {
	st := quietDiskStat(p.tb, p.name)
	if err := p.b.Read(p.hists); err != nil {
		p.tb.Fatal(err)
	}
	return p.hists[p.dev], st
}

// TestBlockLatencyLoop does direct reads and writes on a loop device of its
// own: the requests counted in the device's histogram equal the requests
// the kernel says the device completed (/sys/block/<dev>/stat). Then it
// flushes the device: the kernel's stat counts each flush twice, as an
// empty write and as a flush, while the driver is sent one request, the
// flush, which the histogram counts once.
func TestBlockLatencyLoop(t *testing.T) {
	sh, b := loadBlock(t)
	name, dev := loopDevice(t, 8<<20)
	if got, err := bpf.DiskName(dev); err != nil || got != name {
		t.Errorf("DiskName(%s) = %q, %v; want %q", dev, got, err, name)
	}
	if err := b.Attach(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile("/dev/"+name, os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	p := &blockProbe{tb: t, b: b, name: name, dev: dev, hists: make(map[bpf.Dev]bpf.Hist)}

	h0, st0 := p.read()
	const n = 200
	for i := range n {
		buf[0] = byte(i)
		if _, err := f.WriteAt(buf, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := f.ReadAt(buf, int64(n-1-i)*4096); err != nil {
				t.Fatal(err)
			}
		}
	}
	h1, st1 := p.read()
	got, want := h1.Sub(&h0), st1.completed-st0.completed
	lo, _ := bpf.BucketBounds(got.Median())
	_, hi := bpf.BucketBounds(got.Median())
	t.Logf("%s (%s) reads and writes: stat says %d requests completed, histogram counted %d, median in [%d, %d) ns; buckets %v",
		name, dev, want, got.Count(), lo, hi, got)
	if got.Count() != want || want < n+n/2 {
		t.Errorf("%s: histogram counted %d requests, /sys/block/%s/stat says %d completed (%d made)", name, got.Count(), name, want, n+n/2)
	}

	const flushes = 10
	for range flushes {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	h2, st2 := p.read()
	got, want = h2.Sub(&h1), st2.completed-st1.completed
	flushed := st2.flushes - st1.flushes
	t.Logf("%s flushes: stat says %d requests completed, %d of them flushes; histogram counted %d", name, want, flushed, got.Count())
	if flushed != flushes || got.Count() != want-flushed {
		t.Errorf("%s after %d fsyncs: histogram counted %d, stat %d completed with %d flushes; want stat - flushes", name, flushes, got.Count(), want, flushed)
	}

	if err := b.Detach(); err != nil {
		t.Fatal(err)
	}
	l, err := sh.Ledger(bpf.ProgBlock)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("block ledger %+v", l)
	if !l.Balanced() || l.RingFull != 0 || l.Emitted < h2.Count() {
		t.Errorf("block ledger %+v: want balanced, nothing lost, at least %d emitted", l, h2.Count())
	}
}

package bpf_test

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/bpfstatd/bpfstatd/bpf"
	"golang.org/x/sys/unix"
)

// rareSyscall is a syscall that nothing on a host calls in a tight loop:
// the tests call it N times and expect N more. invalidSyscall has no
// syscall at all (ENOSYS) and is above bpf.MaxSyscallNr.
const (
	rareSyscall    = unix.SYS_SCHED_RR_GET_INTERVAL
	invalidSyscall = 1000
)

// callRare calls rareSyscall n times, and invalidSyscall invalid times.
func callRare(n, invalid int) error {
	var ts unix.Timespec
	for range n {
		if _, _, e := unix.Syscall(rareSyscall, 0, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
			return e
		}
	}
	for range invalid {
		if _, _, e := unix.Syscall(invalidSyscall, 0, 0, 0); e != unix.ENOSYS {
			return e
		}
	}
	return nil
}

// onNamedThread runs f on an OS thread of its own, named name unless name
// is empty; the thread exits afterwards, or, if it is the process's main
// thread (which Go keeps), gets its name back. It returns the thread's id.
func onNamedThread(tb testing.TB, name string, f func() error) (tid int) {
	tb.Helper()
	type result struct {
		tid int
		err error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if name != "" {
			var old [16]byte // TASK_COMM_LEN
			if err := unix.Prctl(unix.PR_GET_NAME, uintptr(unsafe.Pointer(&old[0])), 0, 0, 0); err != nil {
				done <- result{err: err}
				return
			}
			b := append([]byte(name), 0)
			if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0); err != nil {
				done <- result{err: err}
				return
			}
			tid, err := unix.Gettid(), f()
			unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&old[0])), 0, 0, 0)
			done <- result{tid, err}
			return
		}
		done <- result{unix.Gettid(), f()}
	}()
	r := <-done
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.tid
}

// uniqueThreadName returns a thread name no other task uses.
func uniqueThreadName() string {
	var b [4]byte
	rand.Read(b[:])
	return "bpfsc-" + hex.EncodeToString(b[:]) // 14 bytes: under TASK_COMM_LEN
}

// loadSyscalls loads the syscalls collector with fresh shared maps.
func loadSyscalls(tb testing.TB, ring bpf.RingOptions) (*bpf.Shared, *bpf.Syscalls) {
	tb.Helper()
	return loadCollector(tb, ring, bpf.LoadSyscalls)
}

// TestSyscallCounts calls a rare syscall N times and an invalid number N
// times from one thread: each counter grows by N, give or take the calls
// other tasks made in a window of the same length just before.
func TestSyscallCounts(t *testing.T) {
	sh, c := loadSyscalls(t, bpf.RingOptions{})
	if err := c.Attach(); err != nil {
		t.Fatal(err)
	}
	const n, window = 1000, 200 * time.Millisecond
	var before, after bpf.SyscallCounts
	read := func(into *bpf.SyscallCounts) {
		if err := c.ReadCounts(into); err != nil {
			t.Fatal(err)
		}
	}

	read(&before)
	time.Sleep(window)
	read(&after)
	foreignRare := after.ByNr[rareSyscall] - before.ByNr[rareSyscall]
	foreignInvalid := after.OutOfRange - before.OutOfRange

	read(&before)
	start := time.Now()
	onNamedThread(t, "", func() error { return callRare(n, n) })
	time.Sleep(window - time.Since(start))
	read(&after)
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}

	rare := after.ByNr[rareSyscall] - before.ByNr[rareSyscall]
	invalid := after.OutOfRange - before.OutOfRange
	t.Logf("%s: %d counted for %d calls (%d by others before); out of range: %d for %d (%d before); %d syscalls in all",
		bpf.SyscallName(rareSyscall), rare, n, foreignRare, invalid, n, foreignInvalid, after.Total()-before.Total())
	if rare < n || rare > n+foreignRare {
		t.Errorf("%s counted %d times, want %d (+%d at most)", bpf.SyscallName(rareSyscall), rare, n, foreignRare)
	}
	if invalid < n || invalid > n+foreignInvalid {
		t.Errorf("syscall %d counted %d times out of range, want %d (+%d at most)", invalidSyscall, invalid, n, foreignInvalid)
	}
	if total := after.Total() - before.Total(); total < rare+invalid {
		t.Errorf("total %d below its parts %d + %d", total, rare, invalid)
	}
	if l, err := sh.Ledger(bpf.ProgSyscallProc); err != nil || l != (bpf.Ledger{}) {
		t.Errorf("by-process ledger %+v (%v) while by-process recording was off", l, err)
	}
}

// TestSyscallsByProcess calls a rare syscall N times from a uniquely named
// thread: records of that syscall with the name, the thread's id and the
// process's id count exactly N, in runs far fewer than N, and the ledger
// balances with what was drained, with no run left open after Detach.
func TestSyscallsByProcess(t *testing.T) {
	sh, c := loadSyscalls(t, bpf.RingOptions{Size: 8 << 20})
	name := uniqueThreadName()
	const n = 1000
	type origin struct{ nr, pid, tgid uint32 }
	got := make(map[origin]int) // syscalls named name
	var records, stamped, badTime int
	var rec bpf.SyscallRecord
	start := monotonicNS(t)
	stop := drainAll(t, sh, func(r *bpf.Record) {
		if err := r.Syscall(&rec); err != nil {
			t.Errorf("record of kind %d: %v", r.Kind, err)
			return
		}
		if string(rec.Name()) == name {
			got[origin{rec.Nr, rec.PID, rec.TGID}] += int(rec.Count)
			records++
		}
		if rec.TimeNS != 0 {
			stamped++
			if rec.TimeNS < start || rec.TimeNS > monotonicNS(t) {
				badTime++
			}
		}
	})
	if err := c.Attach(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetByProcess(true); err != nil {
		t.Fatal(err)
	}
	tid := onNamedThread(t, name, func() error { return callRare(n, 0) })
	// A few jiffies pass: the runs opened after them carry the time.
	time.Sleep(20 * time.Millisecond)
	if err := c.SetByProcess(false); err != nil {
		t.Fatal(err)
	}
	// Every CPU the program ran on holds its last run open, until flushed.
	if l, err := sh.Ledger(bpf.ProgSyscallProc); err != nil || l.Pending == 0 || !l.Balanced() {
		t.Errorf("ledger %+v (%v) with the program detached: want runs pending, balanced", l, err)
	}
	if err := c.FlushRuns(); err != nil {
		t.Fatal(err)
	}
	if l, err := sh.Ledger(bpf.ProgSyscallProc); err != nil || l.Pending != 0 {
		t.Errorf("ledger %+v (%v) after FlushRuns: want no run pending", l, err)
	}
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	end := monotonicNS(t)
	stats := stop()

	l, err := sh.Ledger(bpf.ProgSyscallProc)
	if err != nil {
		t.Fatal(err)
	}
	want := origin{rareSyscall, uint32(tid), uint32(os.Getpid())}
	t.Logf("ledger %+v; drained %+v; %d stamped; named %s: %v in %d records", l, stats, stamped, name, got, records)
	// Runs opened in a new jiffy carry the time, within the test's.
	if stamped == 0 || badTime != 0 {
		t.Errorf("%d records stamped, %d of them outside [%d, %d]: want some, all inside", stamped, badTime, start, end)
	}
	if got[want] != n {
		t.Errorf("%d calls of %s from thread %d named %s, want %d", got[want], bpf.SyscallName(rareSyscall), tid, name, n)
	}
	if records > n/10 {
		t.Errorf("%d calls in a row took %d records, want runs of them", n, records)
	}
	for o, k := range got {
		if o.nr == rareSyscall && o != want {
			t.Errorf("%d calls of %s named %s from %+v, not from thread %d", k, bpf.SyscallName(rareSyscall), name, o, tid)
		}
	}
	if !l.Balanced() || l.RingFull != 0 || l.SampledOut != 0 || l.Pending != 0 || l.Records != stats.Records ||
		l.Emitted < l.Records || stats.DecodeErrors != 0 {
		t.Errorf("ledger %+v, drained %+v: want balanced, nothing lost or left open, every record drained", l, stats)
	}
}

// monotonicNS reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNS(tb testing.TB) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		tb.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestSyscallsByProcessSampled keeps one syscall in four per CPU: the
// records say so, and the ledger balances with the ones sampled out.
func TestSyscallsByProcessSampled(t *testing.T) {
	sh, c := loadSyscalls(t, bpf.RingOptions{Size: 8 << 20})
	const rate, n = 4, 4000
	if err := c.SetSampleRate(rate); err != nil {
		t.Fatal(err)
	}
	if err := c.SetSampleRate(0); err == nil {
		t.Error("SetSampleRate(0) accepted")
	}
	if err := c.SetByProcess(true); err != nil {
		t.Fatal(err)
	}
	name := uniqueThreadName()
	var ours, badRate uint64
	var rec bpf.SyscallRecord
	stop := drainAll(t, sh, func(r *bpf.Record) {
		if r.Syscall(&rec) != nil {
			return
		}
		if rec.Rate != rate {
			badRate++
		}
		if rec.Nr == rareSyscall && string(rec.Name()) == name {
			ours += uint64(rec.Count)
		}
	})
	if err := c.Attach(); err != nil {
		t.Fatal(err)
	}
	onNamedThread(t, name, func() error { return callRare(n, 0) })
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	stats := stop()
	l, err := sh.Ledger(bpf.ProgSyscallProc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ledger %+v; %d of our %d calls recorded at 1 in %d", l, ours, n, rate)
	if !l.Balanced() || l.SampledOut == 0 || l.Pending != 0 || l.Records != stats.Records {
		t.Errorf("ledger %+v, drained %+v: want balanced with events sampled out", l, stats)
	}
	if badRate != 0 || ours == 0 || ours > n {
		t.Errorf("%d records with a rate other than %d; %d of our %d calls recorded", badRate, rate, ours, n)
	}
}

// TestSyscallsByProcessRingFull fills a one-page ring with no reader:
// runs that find no room are counted with their events, and the ledger
// balances exactly with the records the ring kept, drained afterwards.
func TestSyscallsByProcessRingFull(t *testing.T) {
	sh, c := loadSyscalls(t, bpf.RingOptions{Size: uint32(os.Getpagesize())})
	if err := c.SetByProcess(true); err != nil {
		t.Fatal(err)
	}
	if err := c.Attach(); err != nil {
		t.Fatal(err)
	}
	// A record per call: no call repeats the one before.
	onNamedThread(t, uniqueThreadName(), func() error {
		for range 2000 {
			unix.Getppid()
			unix.Getpid()
		}
		return nil
	})
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	stats := drainAll(t, sh, func(*bpf.Record) {})()
	l, err := sh.Ledger(bpf.ProgSyscallProc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ledger %+v; drained %+v", l, stats)
	if !l.Balanced() || l.RingFull < 4000-uint64(os.Getpagesize()/bpf.SyscallRecordSize) || l.RingFullEvents != l.RingFull ||
		l.Pending != 0 || l.Records != stats.Records || stats.DecodeErrors != 0 {
		t.Errorf("ledger %+v, drained %+v: want balanced, most calls lost to the full ring, every record kept drained", l, stats)
	}
}

func TestSyscallName(t *testing.T) {
	for nr, want := range map[uint32]string{
		unix.SYS_READ:    "read",
		unix.SYS_GETPPID: "getppid",
		rareSyscall:      "sched_rr_get_interval",
		invalidSyscall:   "sys_1000",
		1 << 31:          "sys_2147483648",
	} {
		if got := bpf.SyscallName(nr); got != want {
			t.Errorf("SyscallName(%d) = %q, want %q", nr, got, want)
		}
	}
	for _, c := range []struct {
		goarch string
		nr     int
		want   string
	}{
		{"amd64", 0, "read"}, {"amd64", 110, "getppid"}, {"amd64", 262, "newfstatat"}, {"amd64", 435, "clone3"},
		{"arm64", 0, "io_setup"}, {"arm64", 173, "getppid"}, {"arm64", 79, "newfstatat"}, {"arm64", 435, "clone3"},
	} {
		if names := bpf.SyscallNames(c.goarch); c.nr >= len(names) || names[c.nr] != c.want {
			t.Errorf("%s syscall %d is not named %q", c.goarch, c.nr, c.want)
		}
	}
	for _, goarch := range []string{"amd64", "arm64"} {
		if n := len(bpf.SyscallNames(goarch)); n == 0 || n > bpf.MaxSyscallNr {
			t.Errorf("%s table of %d names: want 1..%d, each counted in a slot of its own", goarch, n, bpf.MaxSyscallNr)
		}
	}
}

func syscallSample(nr uint32, comm string) []byte {
	b := make([]byte, bpf.SyscallRecordSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(bpf.KindSyscall))
	le.PutUint32(b[4:], 2)
	le.PutUint64(b[8:], 987654321)
	le.PutUint32(b[16:], nr)
	le.PutUint32(b[20:], 43)
	le.PutUint32(b[24:], 42)
	le.PutUint32(b[28:], 7)
	copy(b[32:], comm)
	return b
}

func TestDecodeSyscall(t *testing.T) {
	var r bpf.Record
	var s bpf.SyscallRecord
	if err := bpf.DecodeRecord(syscallSample(110, "bash"), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Syscall(&s); err != nil {
		t.Fatal(err)
	}
	want := bpf.Header{Kind: bpf.KindSyscall, Rate: 2, TimeNS: 987654321}
	if s.Header != want || s.Nr != 110 || s.PID != 43 || s.TGID != 42 || s.Count != 7 || s.Events() != 14 || string(s.Name()) != "bash" {
		t.Errorf("decoded %+v name %q", s, s.Name())
	}
	empty := syscallSample(110, "bash")
	binary.LittleEndian.PutUint32(empty[28:], 0)
	if err := bpf.DecodeRecord(empty, &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Syscall(&s); !errors.Is(err, bpf.ErrRecord) {
		t.Errorf("a run of 0 syscalls: %v, want ErrRecord", err)
	}
	if err := bpf.DecodeRecord(syscallSample(0, "0123456789abcdef"), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Syscall(&s); err != nil || string(s.Name()) != "0123456789abcdef" {
		t.Errorf("a 16-byte comm without NUL: name %q, err %v", s.Name(), err)
	}
	if err := bpf.DecodeRecord(syscallSample(0, "x")[:bpf.SyscallRecordSize-1], &r); !errors.Is(err, bpf.ErrRecord) {
		t.Errorf("short record: %v, want ErrRecord", err)
	}
	var p bpf.ProcessRecord
	if err := r.Process(&p); !errors.Is(err, bpf.ErrRecord) {
		t.Errorf("syscall record decoded as a process record: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() {
		_ = bpf.DecodeRecord(syscallSample(1, "x"), &r)
	}); n > 1 { // the sample itself
		t.Errorf("decoding allocates %v times", n)
	}
}

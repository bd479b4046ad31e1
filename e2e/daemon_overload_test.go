package e2e

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/internal/admin"
	"unsafe"
)

// TestDaemonKernelOverload runs --syscalls-by-process with a thread of a
// unique name calling getppid and getpid in turn in a tight loop (so that
// each call is a run of its own: a record per call), far above what the
// drain can take, for 20 s (60 s with BPFSTATD_E2E_LONG=1): the daemon keeps
// answering, the throttle level rises and falls back after the load, the
// daemon exits 0 on SIGTERM, and the exporter's total for the thread (each
// record counting for its sample rate) balances the calls the thread made
// against what the ledger says the full ring lost, to within 1% of the
// calls (see the balance below for why the ledger only bounds it).
//
// The ring is 64 KiB, about 0.7 ms of records at this rate, not the 4 MiB
// that --syscalls-by-process otherwise gets, which one thread on this
// machine cannot overflow: the storm must outrun the drain (its wakeup
// alone takes longer than the ring lasts) for throttling to show.
func TestDaemonKernelOverload(t *testing.T) {
	requireE2E(t)
	load := longForm("BPFSTATD_E2E_LONG", 20*time.Second, 60*time.Second)
	exp := startExporter(t, "")
	d := startDaemon(t, exp.output(), "--collectors", "syscalls", "--syscalls-by-process", "--ring-size", "65536", "--flush-interval", "200ms")
	name := uniqueName("sysc-")

	var stop atomic.Bool
	var calls atomic.Uint64
	done := make(chan error, 1)
	go func() {
		// The thread keeps its name until it ends: never unlock it, so the
		// runtime ends it with the goroutine.
		runtime.LockOSThread()
		cname := append([]byte(name), 0)
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&cname[0])), 0, 0, 0); err != nil {
			done <- err
			return
		}
		var n uint64
		for !stop.Load() {
			for range 500 {
				unix.Getppid()
				unix.Getpid()
			}
			n += 1000
			calls.Store(n)
		}
		done <- nil
	}()
	t.Cleanup(func() { stop.Store(true) })

	start := time.Now()
	maxLevel, answered := 0, 0
	for time.Since(start) < load {
		time.Sleep(500 * time.Millisecond)
		s := d.status(t) // fails the test if the daemon stops answering
		answered++
		maxLevel = max(maxLevel, s.Throttle.Level)
	}
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatalf("name the load thread: %v", err)
	}
	n := calls.Load()
	rate := float64(n) / time.Since(start).Seconds()

	// The level falls back once the load is gone.
	fell := time.Now()
	var s = d.status(t)
	for s.Throttle.Level != 0 && time.Since(fell) < 30*time.Second {
		time.Sleep(250 * time.Millisecond)
		s = d.status(t)
	}
	fellAfter := time.Since(fell)
	time.Sleep(500 * time.Millisecond) // the ledger catches up with the last interval
	l := d.drops(t)
	took, err := d.terminate(t, 5*time.Second)
	if err != nil {
		t.Fatalf("after SIGTERM: %v (after %v)", err, took)
	}
	var f families
	prev := -1.0
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		f = exp.mustScrape(t)
		cur := f.sum("host_syscalls_by_process", "comm", name)
		if cur == prev {
			break
		}
		prev = cur
	}
	got := f.sum("host_syscalls_by_process", "comm", name)
	full, sampled := l.count("kernel", "ring_full", "syscall_proc"), l.count("kernel", "sampled_out", "syscall_proc")
	t.Logf("%s made %d getppid and getpid calls in %v (%.2f M/s); throttle peaked at level %d and was back at 0 %v after; "+
		"status answered %d times; SIGTERM to exit %v", name, n, load, rate/1e6, maxLevel, fellAfter.Round(time.Millisecond),
		answered, took.Round(time.Millisecond))
	t.Logf("status latency p50 %v p99 %v max %v", time.Duration(s.Latency.P50), time.Duration(s.Latency.P99), time.Duration(s.Latency.Max))
	t.Logf("exporter: %v for %s (%.3f%% of the calls); ledger syscall_proc ring_full %d, sampled_out %d; all: %s",
		got, name, 100*got/float64(n), full, sampled, l.nonZero())

	// Most syscall records carry no timestamp (ts_ns 0): they must not
	// count as an hour-long latency.
	if s.Latency.Max > admin.Duration(time.Minute) {
		t.Errorf("status latency p50 %v, p99 %v, max %v: far beyond the test's length",
			time.Duration(s.Latency.P50), time.Duration(s.Latency.P99), time.Duration(s.Latency.Max))
	}
	if maxLevel == 0 {
		t.Errorf("throttle level never rose under %.2f M syscalls/s", rate/1e6)
	}
	if s.Throttle.Level != 0 {
		t.Errorf("throttle level still %d 30s after the load stopped", s.Throttle.Level)
	}
	if sampled == 0 && maxLevel > 0 {
		t.Errorf("the throttle rose but the kernel sampled nothing out")
	}
	// Records lost to a full ring are not scaled back: they are the
	// ledger's. But the ledger's ring_full is every thread's, not only the
	// test's (other processes run), and it counts a record lost at sample
	// rate r as one ring_full event and r-1 sampled_out ones, though all r
	// are lost (the ledger does not keep the rate of what the ring
	// dropped). So the exporter's total lies between the calls less
	// ring_full times the highest rate seen, and the calls; sampling by each
	// CPU's count makes it an estimate, allowed 1% of the calls either way.
	maxRate := float64(uint64(1) << maxLevel)
	hi, lo := float64(n), float64(n)-maxRate*float64(full)
	t.Logf("balance: exporter %v; calls %v (%+.2f%%); calls less ring_full %v (%+.2f%%); calls less ring_full x %v %v (%+.2f%%)",
		got, n, 100*(got-hi)/float64(n), float64(n)-float64(full), 100*(got-float64(n)+float64(full))/float64(n),
		maxRate, lo, 100*(got-lo)/float64(n))
	if got > hi+0.01*float64(n) || got < lo-0.01*float64(n) {
		t.Errorf("exporter total %v for %s; the thread made %d calls, the ring lost %d records at rates up to %v: want between %v and %v, within 1%% of the calls",
			got, name, n, full, maxRate, lo, hi)
	}
	if lost := l.userLost(); lost != 0 {
		t.Errorf("ledger counts %d lines lost in user space: %s", lost, l.nonZero())
	}
	if bad := exporterErrors(f); len(bad) != 0 {
		t.Errorf("statsd_exporter counted malformed input: %v", bad)
	}
}

package bpf_test

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// TestWakeupOncePerJiffy fills a ring past its wakeup threshold with a
// record per syscall while no reader runs: each CPU forces at most one
// wakeup (an IRQ work interrupt) a jiffy, not one per record checked, and
// nothing is lost. A reader that then waits on its own timer of a minute
// is still woken by the records past the threshold.
func TestWakeupOncePerJiffy(t *testing.T) {
	const wakeupBytes = 4096
	if irqWork() == 0 {
		kerneltest.Unavailable(t, "no IWI line in /proc/interrupts (x86 only): IRQ work cannot be counted")
	}
	sh, c := loadCollector(t, bpf.RingOptions{Size: 16 << 20, WakeupBytes: wakeupBytes}, bpf.LoadSyscallsEach)
	if err := c.SetByProcess(true); err != nil {
		t.Fatal(err)
	}
	if err := c.Attach(); err != nil {
		t.Fatal(err)
	}
	detached := false
	defer func() {
		if !detached {
			c.Detach()
		}
	}()

	// The program checks the fill on one record in 64 per CPU: 2000 checks
	// past the threshold, where each used to force a wakeup.
	const calls = 64 * 2000
	done := make(chan struct{})
	var elapsed time.Duration
	var irq uint64
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		irq0, start := irqWork(), time.Now()
		for range calls {
			unix.Getppid()
		}
		elapsed, irq = time.Since(start), irqWork()-irq0
	}()
	<-done
	// HZ is at most 1000: a CPU forces at most one wakeup a millisecond.
	cpus := uint64(runtime.NumCPU())
	limit := (uint64(elapsed.Milliseconds())+2)*cpus + 20 // 20: other IRQ work on the host
	t.Logf("%d getppid calls in %s: %d IRQ work interrupts (limit %d)", calls, elapsed, irq, limit)
	if irq > limit {
		t.Errorf("%d IRQ work interrupts while %d records waited past the threshold for %s: want at most %d",
			irq, calls, elapsed, limit)
	}

	// A reader whose timer is a minute off drains the backlog once a
	// record past the threshold wakes it, and then wakes again for more.
	d, err := ringbuf.NewDrainer(sh.Events(), bpf.DecodeRecord, ringbuf.DrainOptions{Poll: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx, func(*bpf.Record) {})
	waitRecords := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for d.Stats().Records < want {
			if time.Now().After(deadline) {
				t.Fatalf("reader drained %d records in 5s, want at least %d", d.Stats().Records, want)
			}
			unix.Getppid() // a record: past the threshold, it may wake the reader
			time.Sleep(time.Millisecond)
		}
	}
	waitRecords(calls)
	before := d.Stats().Records
	burst := 2 * wakeupBytes / (bpf.SyscallRecordSize + 8)
	for range burst {
		unix.Getppid()
	}
	waitRecords(before + uint64(burst))

	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	detached = true
	l, err := sh.Ledger(bpf.ProgSyscallProc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("by-process ledger %+v, drain %+v", l, d.Stats())
	if !l.Balanced() || l.RingFull != 0 {
		t.Errorf("ledger %+v: want balanced, nothing lost to a full ring", l)
	}
}

// TestWakeupLimitShared checks that collectors loaded on one Shared limit
// their wakeups with its map, not one each: the process and syscalls
// programs that write records all use it.
func TestWakeupLimitShared(t *testing.T) {
	sh, p := loadProcess(t, bpf.RingOptions{})
	s, err := bpf.LoadSyscalls(sh)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info, err := sh.WakeupLimit().Info()
	if err != nil {
		t.Fatal(err)
	}
	shared, _ := info.ID()
	if err := p.Attach(); err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	_, byProcess := s.Programs()
	progs := append(bpf.AttachedPrograms(p), byProcess)
	if len(progs) != 4 {
		t.Fatalf("%d programs, want exec, exit, fork and record_syscall", len(progs))
	}
	for _, prog := range progs {
		pi, err := prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		ids, ok := pi.MapIDs()
		if !ok {
			t.Fatalf("%s: the kernel gives no map ids", pi.Name)
		}
		if !slices.Contains(ids, shared) {
			t.Errorf("%s uses maps %v, not the shared wakeup limit %d", pi.Name, ids, shared)
		}
	}
}

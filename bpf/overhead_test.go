package bpf_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
	"github.com/bpfstatd/bpfstatd/ringbuf"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	cebpfringbuf "github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Targets for the by-process (ring-buffer) program, checked by
// BenchmarkSyscallHooks.
const (
	maxRingNSPerEvent = 200 // BPF run time per event
	minWakeupRatio    = 5   // default wakeup versus NO_WAKEUP, per event
)

// benchRingSize holds 20 ms of records at 2.5 M syscalls a second, twice
// the drainer's poll, so that a reader slowed by a busy host still keeps up
// (FIGURES.md: size the ring for 4 x rate x poll period x record size).
const benchRingSize = 8 << 20

// Measurement windows: figures are medians over statsWindows windows of
// statsCalls getppid calls each, which ride out a noisy host better than
// one long window.
const (
	statsWindows = 9
	statsCalls   = 1 << 16
)

// BenchmarkSyscallHooks measures, in one run, what each syscalls program
// costs on sys_enter. Each is attached alone, with an 8 MiB ring (forced
// wakeup at 2 MiB), while a getppid loop runs on a locked thread and a
// reader empties the ring concurrently (see drain). After a
// b.Loop of getppid calls with the program attached (ns/op), windows taken
// in turn give medians of:
//
//   - added-ns/call: a getppid call with the program attached and
//     kernel.bpf_stats_enabled off, minus one just before, detached;
//   - bpf-ns/event: the program's own run time per event, run_time_ns /
//     run_cnt with bpf_stats_enabled on (which itself slows the syscall,
//     hence windows of their own);
//
// and, over all the windows:
//
//   - ring-full/event: the share of records the ring had no room for (the
//     figures of a ring program mean little unless it is about 0);
//   - irq-work/event: IRQ work interrupts (IWI in /proc/interrupts, x86)
//     per event: each ring-buffer wakeup raises one unless one is pending,
//     so this shows how often a program really woke the reader.
//
// Each variant runs with a reader emptying the ring, because the reader's
// behaviour shows in the producer's cost:
//
//   - by_process: the program as the daemon runs it (a record per run of
//     identical syscalls) with the daemon's reader, ringbuf.Drainer, which
//     hands the ring's space back once per batch and sleeps between
//     batches;
//   - by_process_cilium_reader: the same program with cilium's
//     ringbuf.Reader, which hands the space back after every record;
//   - by_process_each: the same program writing a record per syscall
//     (BPF_RB_NO_WAKEUP, the forced wakeup past the threshold), with the
//     daemon's reader: what the runs save;
//   - by_process_default_wakeup: the same program writing a record per
//     syscall with flags 0, with cilium's reader: the naive stack, in
//     which the reader catches up often and the kernel then wakes it for
//     the next record (an IRQ work interrupt and a wakeup); each store of
//     that reader to the consumer position also moves the cache line that
//     every reserve and submit in the kernel reads to the reader's CPU and
//     back;
//   - by_process_default_wakeup_drainer: flags 0 on every record with the
//     daemon's reader, which seldom catches up, so flags 0 seldom wake it.
//
// Two more programs, assembled here, split the costs:
//
//   - floor: a program that only returns, which costs what the run-time
//     statistics add around any program (two clock reads);
//   - ring_only: one reserve and one submit (BPF_RB_NO_WAKEUP) of a record
//     of by_process's size, written with zeros, and nothing else: the least
//     a program with a record per event can cost.
//
// x-by_process is how many times more a variant costs per event than
// by_process did in the same run. The benchmark fails if by_process costs
// more than 200 ns per event, or the naive stack less than 5 times more.

func BenchmarkSyscallHooks(b *testing.B) {
	kerneltest.Require(b)
	sh, err := bpf.NewShared(bpf.RingOptions{Size: benchRingSize})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sh.Close() })
	c, err := bpf.LoadSyscalls(sh)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	each, err := bpf.LoadSyscallsEach(sh)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { each.Close() })
	naive, err := bpf.LoadSyscallsNaive(sh)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { naive.Close() })
	sh.ReleaseBTF()
	stats := bpfStatsSwitch(b)

	counts, byProcess := c.Programs()
	_, byProcessEach := each.Programs()
	_, byProcessWake := naive.Programs()
	var ring float64
	variant := func(name string, prog *ebpf.Program, reader func(testing.TB, *bpf.Shared) func()) float64 {
		var cost float64
		b.Run(name, func(b *testing.B) {
			stop := reader(b, sh)
			defer stop()
			cost = hookCost(b, sh, prog, stats)
			if ring > 0 && cost > 0 {
				b.ReportMetric(cost/ring, "x-by_process")
			}
		})
		return cost
	}
	variant("none", nil, drainer)
	variant("counts", counts, drainer)
	ring = variant("by_process", byProcess, drainer)
	variant("by_process_cilium_reader", byProcess, ciliumReader)
	variant("by_process_each", byProcessEach, drainer)
	wake := variant("by_process_default_wakeup", byProcessWake, ciliumReader)
	variant("by_process_default_wakeup_drainer", byProcessWake, drainer)
	variant("floor", floorProgram(b), drainer)
	variant("ring_only", ringOnlyProgram(b, sh.Events()), drainer)
	if ring > maxRingNSPerEvent {
		b.Errorf("by_process costs %.0f ns per event, want at most %d", ring, maxRingNSPerEvent)
	}
	if ring > 0 && wake > 0 && wake < minWakeupRatio*ring {
		b.Errorf("by_process costs %.0f ns per event, the default wakeup with cilium's reader %.0f ns: want %d times less", ring, wake, minWakeupRatio)
	}
}

// floorProgram returns a sys_enter program that does nothing.
func floorProgram(b *testing.B) *ebpf.Program {
	return sysEnterProgram(b, floorInsns())
}

// floorInsns is a program that only returns.
func floorInsns() asm.Instructions { return asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()} }

// ringOnlyProgram returns a sys_enter program that reserves a record of
// by_process's size in events, fills it with zeros and submits it without
// a wakeup.
func ringOnlyProgram(b *testing.B, events *ebpf.Map) *ebpf.Program {
	return sysEnterProgram(b, ringOnlyInsns(events))
}

// ringOnlyInsns is a program that reserves a record of by_process's size
// in events, fills it with zeros and submits it without a wakeup.
func ringOnlyInsns(events *ebpf.Map) asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMapPtr(asm.R1, events.FD()),
		asm.Mov.Imm(asm.R2, bpf.SyscallRecordSize),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 0),
	}
	for off := 0; off < bpf.SyscallRecordSize; off += 8 {
		insns = append(insns, asm.StoreMem(asm.R0, int16(off), asm.R1, asm.DWord))
	}
	insns = append(insns,
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, 1), // BPF_RB_NO_WAKEUP
		asm.FnRingbufSubmit.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return())
	return insns
}

// sysEnterProgram loads a BTF-typed sys_enter program, closed when b ends.
func sysEnterProgram(b *testing.B, insns asm.Instructions) *ebpf.Program {
	return tracepointProgram(b, "sys_enter", "", insns)
}

// tracepointProgram loads a program named name for BTF-typed tracepoint
// hook, closed when b ends.
func tracepointProgram(b *testing.B, hook, name string, insns asm.Instructions) *ebpf.Program {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
		AttachTo: hook, License: "GPL", Instructions: insns})
	if err != nil {
		b.Fatalf("load %s program: %v", hook, err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// hookCost runs the sub-benchmark of one program (nil: no probe) and
// returns its BPF run time per event.
func hookCost(b *testing.B, sh *bpf.Shared, prog *ebpf.Program, stats func(on bool)) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if prog == nil {
		for b.Loop() {
			unix.Getppid()
		}
		return 0
	}
	detach := attachHook(b, prog)
	defer func() { detach() }()
	for b.Loop() {
		unix.Getppid()
	}

	before := hookCounters(b, sh)
	var added, run []float64
	for range statsWindows {
		detach()
		base := getppidLoop(statsCalls)
		detach = attachHook(b, prog)
		added = append(added, getppidLoop(statsCalls)-base)
		run = append(run, hookRunTime(b, prog, stats))
	}
	after := hookCounters(b, sh)
	b.ReportMetric(medianOf(added), "added-ns/call")
	b.ReportMetric(medianOf(run), "bpf-ns/event")
	if seen := float64(after.seen - before.seen); seen > 0 { // a ring program
		b.ReportMetric(float64(after.ringFull-before.ringFull)/seen, "ring-full/event")
		if after.irqWork > 0 {
			b.ReportMetric(float64(after.irqWork-before.irqWork)/seen, "irq-work/event")
		}
	}
	return medianOf(run)
}

// attachHook attaches prog to its tracepoint and returns its detach, which
// may be called more than once.
func attachHook(b *testing.B, prog *ebpf.Program) (detach func()) {
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		b.Fatal(err)
	}
	return sync.OnceFunc(func() { l.Close() })
}

// drainer empties sh's ring with the daemon's reader, ringbuf.Drainer, on
// a goroutine of its own, and returns its stop.
func drainer(tb testing.TB, sh *bpf.Shared) (stop func()) {
	d, err := ringbuf.NewDrainer(sh.Events(), bpf.DecodeRecord, ringbuf.DrainOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, func(*bpf.Record) {}) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
		d.Close()
	}
}

// ciliumReader empties sh's ring with cilium's ringbuf.Reader on a
// goroutine of its own, and returns its stop: a reader that hands each
// record's space back as it reads it, and whose level-triggered wait
// returns while the ring holds anything, so it catches up with the
// producer often, and flags 0 really wake it.
func ciliumReader(tb testing.TB, sh *bpf.Shared) (stop func()) {
	r, err := cebpfringbuf.NewReader(sh.Events())
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rec cebpfringbuf.Record
		for {
			r.SetDeadline(time.Now().Add(ringbuf.DefaultPoll))
			err := r.ReadInto(&rec)
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return // closed
			}
		}
	}()
	return func() {
		r.Close()
		<-done
	}
}

// counters are what hookCost compares before and after its windows.
type counters struct {
	seen, ringFull, irqWork uint64
}

// hookCounters reads the by-process ledger and the IRQ work count.
func hookCounters(b *testing.B, sh *bpf.Shared) counters {
	l, err := sh.Ledger(bpf.ProgSyscallProc)
	if err != nil {
		b.Fatal(err)
	}
	return counters{seen: l.Seen, ringFull: l.RingFull, irqWork: irqWork()}
}

// hookRunTime returns the attached prog's run time per event, in ns, over
// statsCalls getppid calls with BPF statistics on.
func hookRunTime(b *testing.B, prog *ebpf.Program, stats func(on bool)) float64 {
	stats(true)
	s0, err0 := prog.Stats()
	getppidLoop(statsCalls)
	s1, err1 := prog.Stats()
	stats(false)
	if err0 != nil || err1 != nil {
		b.Fatal(err0, err1)
	}
	if s1.RunCount == s0.RunCount {
		b.Fatal("the program did not run")
	}
	return float64(s1.Runtime-s0.Runtime) / float64(s1.RunCount-s0.RunCount)
}

// irqWork returns the IRQ work interrupts of all CPUs so far, from the IWI
// line of /proc/interrupts (x86), or 0.
func irqWork() uint64 {
	data, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		return 0
	}
	var n uint64
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "IWI:" {
			continue
		}
		for _, f := range fields[1:] {
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				break // the description after the counts
			}
			n += v
		}
	}
	return n
}

// getppidLoop calls getppid n times and returns the time per call in ns.
func getppidLoop(n int) float64 {
	start := time.Now()
	for range n {
		unix.Getppid()
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func medianOf(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// bpfStatsSwitch turns kernel.bpf_stats_enabled off and returns a function
// that turns it on or off; the setting found is restored when tb ends.
func bpfStatsSwitch(tb testing.TB) func(on bool) {
	tb.Helper()
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		kerneltest.Unavailable(tb, "no BPF run-time statistics: "+err.Error())
	}
	set := func(v []byte) {
		if err := os.WriteFile(path, v, 0o644); err != nil {
			tb.Fatalf("set %s: %v", path, err)
		}
	}
	tb.Cleanup(func() { set(old) })
	set([]byte("0\n"))
	return func(on bool) {
		if on {
			set([]byte("1\n"))
		} else {
			set([]byte("0\n"))
		}
	}
}

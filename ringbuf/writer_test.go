package ringbuf_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

// testRecordSize is the size of the records the test programs write.
const testRecordSize = 24

// testRecord is what the test programs write: a kind, the CPU the program
// ran on, the value of that CPU's counter before the write, and a fixed
// pattern.
type testRecord struct {
	Kind    uint32
	CPU     uint32
	Seq     uint64
	Pattern uint64
}

const (
	testKind    = 1
	testPattern = 0x0102030405060708
)

var errTestRecord = errors.New("bad test record")

func decodeTestRecord(b []byte, r *testRecord) error {
	if len(b) != testRecordSize {
		return errTestRecord
	}
	r.Kind = binary.LittleEndian.Uint32(b)
	r.CPU = binary.LittleEndian.Uint32(b[4:])
	r.Seq = binary.LittleEndian.Uint64(b[8:])
	r.Pattern = binary.LittleEndian.Uint64(b[16:])
	if r.Kind != testKind || r.Pattern != testPattern {
		return errTestRecord
	}
	return nil
}

// newRingBuf returns a BPF ring buffer of size bytes.
func newRingBuf(tb testing.TB, size uint32) *ebpf.Map {
	tb.Helper()
	kerneltest.Require(tb)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		tb.Fatalf("create ring buffer: %v", err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// writerOptions shape what a test program writes.
type writerOptions struct {
	size int32  // bytes per record; testRecordSize if 0, at least 8
	kind uint32 // testKind if 0
	// wakeup, if not 0, makes the program force a wakeup when more than
	// this many bytes are queued; otherwise it never wakes the reader.
	wakeup int32
	// burst is the number of records one run of the program writes; 1 if
	// 0. A test run costs more than writing a record (about 60 ns against
	// 15 ns on the development machines), so a fast producer writes
	// several per run.
	burst int
}

// writer is a program, assembled here so that tests need no compiler, that
// writes one record into a BPF ring buffer each time it runs and counts,
// per CPU, the records written (numbering them) and those the ring had no
// room for.
type writer struct {
	tb     testing.TB
	prog   *ebpf.Program
	counts *ebpf.Map // per-CPU array of one writerCounts
	packet []byte
}

type writerCounts struct{ Written, Full uint64 }

// newWriter returns a writer into the ring buffer events.
func newWriter(tb testing.TB, events *ebpf.Map, o writerOptions) *writer {
	tb.Helper()
	return loadWriter(tb, o, nil, func(dst asm.Register) asm.Instructions {
		return asm.Instructions{asm.LoadMapPtr(dst, events.FD())}
	})
}

// newShardWriter returns a writer into the ring buffer stored in outer, an
// array of ring buffers, at the index of the CPU it runs on.
func newShardWriter(tb testing.TB, outer *ebpf.Map, o writerOptions) *writer {
	tb.Helper()
	lookup := asm.Instructions{
		// r8 = outer[cpu], the shard
		asm.FnGetSmpProcessorId.Call(),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.Word),
		asm.LoadMapPtr(asm.R1, outer.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "full"),
		asm.Mov.Reg(asm.R8, asm.R0),
	}
	return loadWriter(tb, o, lookup, func(dst asm.Register) asm.Instructions {
		return asm.Instructions{asm.Mov.Reg(dst, asm.R8)}
	})
}

// loadWriter assembles a writer: prologue finds the ring, loadRing puts it
// in a register.
func loadWriter(tb testing.TB, o writerOptions, prologue asm.Instructions, loadRing func(asm.Register) asm.Instructions) *writer {
	tb.Helper()
	kerneltest.Require(tb)
	if o.size == 0 {
		o.size = testRecordSize
	}
	if o.kind == 0 {
		o.kind = testKind
	}
	counts, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 1})
	if err != nil {
		tb.Fatalf("create counters: %v", err)
	}
	tb.Cleanup(func() { counts.Close() })

	insns := asm.Instructions{
		// r6 = this CPU's counters
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, counts.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.Mov.Reg(asm.R6, asm.R0),
	}
	insns = append(insns, prologue...)
	for i := range max(o.burst, 1) {
		insns = append(insns, writeRecord(o, loadRing, fmt.Sprint("submit", i))...)
	}
	insns = append(insns,
		asm.Ja.Label("exit"),
		// full: count a record the ring had no room for
		asm.LoadMem(asm.R1, asm.R6, 8, asm.DWord).WithSymbol("full"),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R6, 8, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("exit"), // XDP_PASS
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "MIT", Instructions: insns})
	if err != nil {
		tb.Fatalf("load writer program: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	return &writer{tb: tb, prog: prog, counts: counts, packet: make([]byte, 64)}
}

// writeRecord writes one record into the ring loadRing loads, or jumps to
// "full"; r6 holds this CPU's counters. submit is a label of its own.
func writeRecord(o writerOptions, loadRing func(asm.Register) asm.Instructions, submit string) asm.Instructions {
	// r7 = reserve(ring, size)
	insns := loadRing(asm.R1)
	insns = append(insns,
		asm.Mov.Imm(asm.R2, o.size),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "full"),
		asm.Mov.Reg(asm.R7, asm.R0),
		// record = {kind, cpu, written++, pattern}, as far as size allows
		asm.StoreImm(asm.R7, 0, int64(o.kind), asm.Word),
		asm.FnGetSmpProcessorId.Call(),
		asm.StoreMem(asm.R7, 4, asm.R0, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord),
	)
	if o.size >= 16 {
		insns = append(insns, asm.StoreMem(asm.R7, 8, asm.R1, asm.DWord))
	}
	insns = append(insns,
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R6, 0, asm.R1, asm.DWord),
	)
	if o.size >= 24 {
		insns = append(insns,
			asm.LoadImm(asm.R1, testPattern, asm.DWord),
			asm.StoreMem(asm.R7, 16, asm.R1, asm.DWord),
		)
	}
	// r2 = flags
	if o.wakeup == 0 {
		insns = append(insns, asm.Mov.Imm(asm.R2, unix.BPF_RB_NO_WAKEUP))
	} else {
		insns = append(insns, loadRing(asm.R1)...)
		insns = append(insns,
			asm.Mov.Imm(asm.R2, unix.BPF_RB_AVAIL_DATA),
			asm.FnRingbufQuery.Call(),
			asm.Mov.Imm(asm.R2, unix.BPF_RB_NO_WAKEUP),
			asm.JLE.Imm(asm.R0, o.wakeup, submit),
			asm.Mov.Imm(asm.R2, unix.BPF_RB_FORCE_WAKEUP),
		)
	}
	return append(insns,
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol(submit),
		asm.FnRingbufSubmit.Call(),
	)
}

// run runs the program n times on the calling goroutine's CPU. (The kernel
// may run it more often: a test run interrupted by a signal is restarted
// whole, so the counters are the truth.) It is safe for concurrent use.
//
// A test run repeated more than once swaps the kernel's XDP dispatcher in
// and out, which costs tens of milliseconds, so up to a few thousand runs
// are made one at a time (a few microseconds each).
func (w *writer) run(n uint32) error {
	repeat, times := n, uint32(1)
	if n <= 4096 {
		repeat, times = 1, n
	}
	for range times {
		if _, err := w.prog.Run(&ebpf.RunOptions{Data: w.packet, Repeat: repeat}); err != nil {
			return fmt.Errorf("run writer program: %w", err)
		}
	}
	return nil
}

// write is run that fails the test on an error. Only the test goroutine may
// call it.
func (w *writer) write(n uint32) {
	w.tb.Helper()
	if err := w.run(n); err != nil {
		w.tb.Fatal(err)
	}
}

// perCPU returns the counts of each possible CPU.
func (w *writer) perCPU() []writerCounts {
	w.tb.Helper()
	var c []writerCounts
	if err := w.counts.Lookup(uint32(0), &c); err != nil {
		w.tb.Fatalf("read writer counters: %v", err)
	}
	return c
}

// total returns the records written and the records lost to a full ring,
// on all CPUs.
func (w *writer) total() (written, full uint64) {
	w.tb.Helper()
	for _, c := range w.perCPU() {
		written += c.Written
		full += c.Full
	}
	return written, full
}

// onCPU runs f on a goroutine locked to a thread that only runs on cpu, and
// returns a channel that is closed when f has returned. The thread exits
// with the goroutine, so its affinity is never reused.
func onCPU(cpu int, f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with us
		var set unix.CPUSet
		set.Set(cpu)
		_ = unix.SchedSetaffinity(0, &set)
		f()
	}()
	return done
}

// seqCheck checks records as a consumer receives them: for each CPU, the
// sequence numbers must rise, and the gaps are records lost on the way.
type seqCheck struct {
	next     []uint64 // per CPU, the sequence number after the last received
	received uint64
	gaps     uint64
	gapAt    []string // the first few gaps
	bad      []string // the first few problems
}

func newSeqCheck() *seqCheck {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		panic(err)
	}
	return &seqCheck{next: make([]uint64, n)}
}

// see checks one received record.
func (c *seqCheck) see(r *testRecord) {
	c.received++
	switch {
	case r.Kind != testKind || r.Pattern != testPattern || int(r.CPU) >= len(c.next):
		c.fail("malformed record %+v", *r)
	case r.Seq < c.next[r.CPU]:
		c.fail("cpu %d: record %d after %d", r.CPU, r.Seq, c.next[r.CPU]-1)
	default:
		if r.Seq != c.next[r.CPU] {
			c.gaps += r.Seq - c.next[r.CPU]
			if len(c.gapAt) < 5 {
				c.gapAt = append(c.gapAt, fmt.Sprintf("cpu %d: %d after %d", r.CPU, r.Seq, int64(c.next[r.CPU])-1))
			}
		}
		c.next[r.CPU] = r.Seq + 1
	}
}

func (c *seqCheck) fail(format string, args ...any) {
	if len(c.bad) < 5 {
		c.bad = append(c.bad, fmt.Sprintf(format, args...))
	}
}

// check fails tb unless each CPU's records arrived up to the last w wrote,
// in order, with exactly lost of them missing.
func (c *seqCheck) check(tb testing.TB, w *writer, lost uint64) {
	tb.Helper()
	for _, b := range c.bad {
		tb.Error(b)
	}
	var written uint64
	for cpu, wc := range w.perCPU() {
		written += wc.Written
		if c.next[cpu] > wc.Written || lost == 0 && c.next[cpu] != wc.Written {
			tb.Errorf("cpu %d: received up to record %d of %d", cpu, int64(c.next[cpu])-1, wc.Written)
		}
		c.gaps += wc.Written - c.next[cpu] // lost after the last received
		c.next[cpu] = wc.Written
	}
	if c.received+lost != written || c.gaps != lost {
		tb.Errorf("received %d of %d records with %d missing, want %d lost; first gaps: %q", c.received, written, c.gaps, lost, c.gapAt)
	}
}

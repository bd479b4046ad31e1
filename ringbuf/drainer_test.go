package ringbuf_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// testRecordSize is the size of the records the test program writes.
const testRecordSize = 24

// testRecord is what the test program writes: a kind, the value of its
// counter map before the write, and a fixed pattern.
type testRecord struct {
	Kind    uint32
	Seq     uint64
	Pattern uint64
}

const testPattern = 0x0102030405060708

var errTestRecord = errors.New("bad test record")

func decodeTestRecord(b []byte, r *testRecord) error {
	if len(b) != testRecordSize {
		return errTestRecord
	}
	r.Kind = binary.LittleEndian.Uint32(b)
	r.Seq = binary.LittleEndian.Uint64(b[8:])
	r.Pattern = binary.LittleEndian.Uint64(b[16:])
	if r.Kind != 1 || r.Pattern != testPattern {
		return errTestRecord
	}
	return nil
}

// newWriter returns a ring buffer of size bytes and a function that runs a
// program n times, each run writing one testRecord numbered by a counter,
// and returns how many records the program has written in all. (The kernel
// may run it more than n times: a test run interrupted by a signal is
// restarted whole, so the program's counter is the truth.) The program is
// assembled here, so the test needs no compiler.
func newWriter(tb testing.TB, size uint32) (events *ebpf.Map, write func(n uint32) uint64) {
	tb.Helper()
	kerneltest.Require(tb)
	events, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		tb.Fatalf("create ring buffer: %v", err)
	}
	tb.Cleanup(func() { events.Close() })
	seq, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		tb.Fatalf("create counter: %v", err)
	}
	tb.Cleanup(func() { seq.Close() })

	insns := asm.Instructions{
		// r6 = &seq[0]
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, seq.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		asm.Mov.Reg(asm.R6, asm.R0),
		// r0 = reserve(events, testRecordSize)
		asm.LoadMapPtr(asm.R1, events.FD()),
		asm.Mov.Imm(asm.R2, testRecordSize),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "exit"),
		// record = {1, seq++, pattern}
		asm.StoreImm(asm.R0, 0, 1, asm.Word),
		asm.StoreImm(asm.R0, 4, 0, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord),
		asm.StoreMem(asm.R0, 8, asm.R1, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R6, 0, asm.R1, asm.DWord),
		asm.LoadImm(asm.R1, testPattern, asm.DWord),
		asm.StoreMem(asm.R0, 16, asm.R1, asm.DWord),
		// submit without waking the reader
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, 1), // BPF_RB_NO_WAKEUP
		asm.FnRingbufSubmit.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "MIT", Instructions: insns})
	if err != nil {
		tb.Fatalf("load writer program: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	packet := make([]byte, 64)
	return events, func(n uint32) uint64 {
		tb.Helper()
		if n > 0 {
			if _, err := prog.Run(&ebpf.RunOptions{Data: packet, Repeat: n}); err != nil {
				tb.Fatalf("run writer program: %v", err)
			}
		}
		var written uint64
		if err := seq.Lookup(uint32(0), &written); err != nil {
			tb.Fatalf("read writer counter: %v", err)
		}
		return written
	}
}

func newDrainer(tb testing.TB, events *ebpf.Map) *ringbuf.Drainer[testRecord] {
	tb.Helper()
	d, err := ringbuf.NewDrainer(events, decodeTestRecord, ringbuf.DrainOptions{Poll: time.Millisecond})
	if err != nil {
		tb.Fatalf("NewDrainer: %v", err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// TestDrainerFlushOnCancel writes records that never wake the reader, then
// cancels Run: every record must still be handed on, in order and intact.
func TestDrainerFlushOnCancel(t *testing.T) {
	events, write := newWriter(t, 64<<10)
	d := newDrainer(t, events)
	n := int(write(1000))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var got []uint64
	if err := d.Run(ctx, func(r *testRecord) { got = append(got, r.Seq) }); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(got) != n {
		t.Fatalf("drained %d records after cancel, want %d", len(got), n)
	}
	for i, s := range got {
		if s != uint64(i) {
			t.Fatalf("record %d has sequence %d", i, s)
		}
	}
	if st := d.Stats(); st.Records != uint64(n) || st.Bytes != uint64(n)*testRecordSize || st.DecodeErrors != 0 {
		t.Errorf("Stats = %+v, want %d records of %d bytes and no errors", st, n, testRecordSize)
	}
}

// TestDrainerConcurrent drains while the kernel writes, then cancels: all
// records arrive exactly once.
func TestDrainerConcurrent(t *testing.T) {
	events, write := newWriter(t, 16<<10)
	d := newDrainer(t, events)
	var (
		mu   sync.Mutex
		next uint64
		bad  int
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, func(r *testRecord) {
			mu.Lock()
			if r.Seq != next {
				bad++
			}
			next = r.Seq + 1
			mu.Unlock()
		})
	}()
	// Write in bursts smaller than the ring, waiting for the reader to
	// catch up so none is lost to a full ring.
	const bursts, per = 50, 100
	var written uint64
	for range bursts {
		written = write(per)
		deadline := time.Now().Add(5 * time.Second)
		for d.Fill() > 0.5 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if next != written || bad != 0 || written < bursts*per {
		t.Errorf("drained up to sequence %d with %d out of order, want %d (at least %d) in order", next, bad, written, bursts*per)
	}
}

// TestDrainerDecodeErrors counts samples that do not decode and skips them.
func TestDrainerDecodeErrors(t *testing.T) {
	events, write := newWriter(t, 64<<10)
	d, err := ringbuf.NewDrainer(events, func(b []byte, r *testRecord) error {
		if err := decodeTestRecord(b, r); err != nil || r.Seq%2 == 1 {
			return errTestRecord
		}
		return nil
	}, ringbuf.DrainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	written := write(10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := uint64(0)
	if err := d.Run(ctx, func(*testRecord) { n++ }); err != nil {
		t.Fatal(err)
	}
	even := (written + 1) / 2
	if st := d.Stats(); n != even || st.Records != even || st.DecodeErrors != written-even {
		t.Errorf("emitted %d of %d, Stats = %+v; want %d records and %d decode errors", n, written, st, even, written-even)
	}
}

// TestDrainerAllocs proves that handing on records allocates nothing: a
// drain of 1,000 queued records allocates no more than a drain of one.
func TestDrainerAllocs(t *testing.T) {
	events, write := newWriter(t, 256<<10)
	d := newDrainer(t, events)
	emit := func(*testRecord) {}
	drain := func(n uint32) float64 {
		const runs = 20
		for range runs + 1 { // AllocsPerRun calls f once more to warm up
			write(n)
		}
		return testing.AllocsPerRun(runs, func() {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := d.Run(ctx, emit); err != nil {
				t.Fatal(err)
			}
		})
	}
	one, many := drain(1), drain(300)
	t.Logf("allocations per drain: %v for 1 record, %v for 300", one, many)
	if many > one {
		t.Errorf("draining 300 records allocated %v times, one record %v: records allocate", many, one)
	}
	if st, written := d.Stats(), write(0); st.Records != written {
		t.Errorf("drained %d records, want %d", st.Records, written)
	}
}

// TestNewDrainerErrors rejects a map that is not a ring buffer and a
// negative poll interval.
func TestNewDrainerErrors(t *testing.T) {
	events, _ := newWriter(t, uint32(os.Getpagesize()))
	if _, err := ringbuf.NewDrainer(events, decodeTestRecord, ringbuf.DrainOptions{Poll: -1}); err == nil {
		t.Error("NewDrainer accepted a negative poll interval")
	}
	arr, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer arr.Close()
	if _, err := ringbuf.NewDrainer(arr, decodeTestRecord, ringbuf.DrainOptions{}); err == nil {
		t.Error("NewDrainer accepted an array map")
	}
}

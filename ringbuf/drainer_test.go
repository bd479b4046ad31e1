package ringbuf_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfstatd/bpfstatd/ringbuf"
)

func newDrainer(tb testing.TB, events *ebpf.Map, opts ringbuf.DrainOptions) *ringbuf.Drainer[testRecord] {
	tb.Helper()
	d, err := ringbuf.NewDrainer(events, decodeTestRecord, opts)
	if err != nil {
		tb.Fatalf("NewDrainer: %v", err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestDrainerFlushOnCancel writes records that never wake the reader, then
// runs a drainer whose timer never fires with a cancelled context: every
// record must still be handed on, in order and intact.
func TestDrainerFlushOnCancel(t *testing.T) {
	events := newRingBuf(t, 64<<10)
	w := newWriter(t, events, writerOptions{})
	d := newDrainer(t, events, ringbuf.DrainOptions{Poll: time.Hour})
	w.write(1000)

	c := newSeqCheck()
	if err := d.Run(cancelled(), c.see); err != nil {
		t.Fatalf("Run: %v", err)
	}
	c.check(t, w, 0)
	n, _ := w.total()
	if st := d.Stats(); st != (ringbuf.DrainStats{Records: n, Bytes: n * testRecordSize}) {
		t.Errorf("Stats = %+v, want %d records of %d bytes", st, n, testRecordSize)
	}
}

// consume pops r on its own goroutine until stop is closed and r is empty,
// checking every record; done is closed once it has finished.
func consume(r *ringbuf.Ring[testRecord], c *seqCheck, stop <-chan struct{}) (done <-chan struct{}) {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		buf := make([]testRecord, 32)
		for {
			stopped := false
			select {
			case <-stop:
				stopped = true
			default:
			}
			n := r.PopBatch(buf)
			for i := range buf[:n] {
				c.see(&buf[i])
			}
			if n == 0 {
				if stopped {
					return
				}
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	return ch
}

// runInto runs d.RunInto(ctx, r) on its own goroutine; the returned stop
// cancels it and returns its error.
func runInto(d *ringbuf.Drainer[testRecord], r ringbuf.Sink[testRecord]) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.RunInto(ctx, r) }()
	return func() error { cancel(); return <-done }
}

// TestDrainerFlushOnShutdown drains into a ring while records that never
// wake the reader arrive; the timer never fires, so the records stay in
// the kernel ring until shutdown, and must all arrive then.
func TestDrainerFlushOnShutdown(t *testing.T) {
	events := newRingBuf(t, 64<<10)
	w := newWriter(t, events, writerOptions{})
	d := newDrainer(t, events, ringbuf.DrainOptions{Poll: time.Hour})
	r, err := ringbuf.NewRing[testRecord](256, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		t.Fatal(err)
	}
	c := newSeqCheck()
	stopConsumer := make(chan struct{})
	consumed := consume(r, c, stopConsumer)
	stop := runInto(d, r)

	time.Sleep(20 * time.Millisecond) // let the reader wait
	w.write(1000)
	time.Sleep(20 * time.Millisecond)
	if st := d.Stats(); st.Records != 0 {
		t.Errorf("%d records drained without a wakeup or a timeout", st.Records)
	}
	if f := d.Fill(); f <= 0 || f > 0.5 {
		t.Errorf("Fill = %v with 1000 records of 32 bytes queued in 64 KiB", f)
	}
	if err := stop(); err != nil {
		t.Fatalf("RunInto: %v", err)
	}
	close(stopConsumer)
	<-consumed
	c.check(t, w, 0)
	if f := d.Fill(); f != 0 {
		t.Errorf("Fill = %v after the flush", f)
	}
}

// TestDrainerWakeups checks that records arrive while the drainer runs:
// with a timer and no wakeups, and with forced wakeups and no timer.
func TestDrainerWakeups(t *testing.T) {
	for _, tc := range []struct {
		name   string
		poll   time.Duration
		wakeup int32
	}{
		{"timer", 5 * time.Millisecond, 0},
		{"forced", time.Hour, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events := newRingBuf(t, 64<<10)
			w := newWriter(t, events, writerOptions{wakeup: tc.wakeup})
			d := newDrainer(t, events, ringbuf.DrainOptions{Poll: tc.poll})
			var got atomic.Uint64
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx, func(*testRecord) { got.Add(1) }) }()
			time.Sleep(10 * time.Millisecond) // let the reader wait
			w.write(100)
			deadline := time.Now().Add(5 * time.Second)
			for got.Load() < 100 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			n := got.Load()
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			if n != 100 {
				t.Errorf("%d of 100 records drained before shutdown", n)
			}
		})
	}
}

// TestDrainerConcurrent drains into a ring while the kernel writes, then
// shuts down: all records arrive exactly once.
func TestDrainerConcurrent(t *testing.T) {
	events := newRingBuf(t, 16<<10)
	w := newWriter(t, events, writerOptions{})
	d := newDrainer(t, events, ringbuf.DrainOptions{Poll: time.Millisecond})
	r, err := ringbuf.NewRing[testRecord](64, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		t.Fatal(err)
	}
	c := newSeqCheck()
	stopConsumer := make(chan struct{})
	consumed := consume(r, c, stopConsumer)
	stop := runInto(d, r)
	// Write in bursts smaller than the ring, waiting for the reader to
	// catch up so none is lost to a full ring.
	for range 50 {
		w.write(100)
		deadline := time.Now().Add(5 * time.Second)
		for d.Fill() > 0.5 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("RunInto: %v", err)
	}
	close(stopConsumer)
	<-consumed
	if written, full := w.total(); written < 5000 || full != 0 {
		t.Errorf("wrote %d records, %d lost to a full kernel ring", written, full)
	}
	c.check(t, w, 0)
	if st := r.Stats(); st.Dropped != 0 || st.Popped != c.received {
		t.Errorf("ring Stats %+v, received %d", st, c.received)
	}
}

// TestDrainIntoStress drains into a small ring, under every policy, while
// a producer on each CPU writes and a consumer falls behind at times. Each
// CPU's records arrive in order, none twice, and each one missing is
// counted as dropped.
func TestDrainIntoStress(t *testing.T) {
	for _, p := range []ringbuf.Policy{ringbuf.RejectNewest, ringbuf.OverwriteOldest, ringbuf.Block} {
		t.Run(p.String(), func(t *testing.T) {
			events := newRingBuf(t, 64<<10)
			w := newWriter(t, events, writerOptions{wakeup: 2 << 10})
			d := newDrainer(t, events, ringbuf.DrainOptions{Poll: time.Millisecond})
			r, err := ringbuf.NewRing[testRecord](128, ringbuf.RingOptions{Policy: p})
			if err != nil {
				t.Fatal(err)
			}
			c := newSeqCheck()
			stopConsumer := make(chan struct{})
			consumed := make(chan struct{})
			go func() { // a consumer that falls behind now and then
				defer close(consumed)
				buf := make([]testRecord, 32)
				for round := 0; ; round++ {
					stopped := false
					select {
					case <-stopConsumer:
						stopped = true
					default:
					}
					n := r.PopBatch(buf[:1+round%len(buf)])
					for i := range buf[:n] {
						c.see(&buf[i])
					}
					switch {
					case n == 0 && stopped:
						return
					case round%200 == 0:
						time.Sleep(time.Millisecond)
					case n == 0:
						time.Sleep(20 * time.Microsecond)
					}
				}
			}()
			stop := runInto(d, r)
			writeOnEveryCPU(t, w, 100, 100) // a producer on each CPU
			if err := stop(); err != nil {
				t.Fatalf("RunInto: %v", err)
			}
			close(stopConsumer)
			<-consumed

			st, rs := d.Stats(), r.Stats()
			written, full := w.total()
			t.Logf("written %d, kernel ring full %d, received %d, drain %+v, ring %+v", written, full, c.received, st, rs)
			c.check(t, w, st.Dropped)
			if st.Records != written || st.DecodeErrors != 0 {
				t.Errorf("drained %d records with %d decode errors, want %d", st.Records, st.DecodeErrors, written)
			}
			if st.Dropped != rs.Dropped+rs.Overwritten || p == ringbuf.Block && st.Dropped != 0 {
				t.Errorf("%v: drain dropped %d, ring %+v", p, st.Dropped, rs)
			}
		})
	}
}

// TestDrainerChasesProducer reads, without ever waiting, a ring that a
// program on another CPU writes to: the reader keeps finding samples that
// are still being written, and must read each once it is committed.
func TestDrainerChasesProducer(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	events := newRingBuf(t, 64<<10)
	w := newWriter(t, events, writerOptions{burst: 16})
	d := newDrainer(t, events, ringbuf.DrainOptions{})
	var stop atomic.Bool
	c := newSeqCheck()
	var err error
	drained := onCPU(0, func() { err = d.DrainSpin(stop.Load, c.see) })
	<-onCPU(1, func() {
		for range 10 {
			w.write(1 << 14)
		}
	})
	stop.Store(true)
	<-drained
	if err != nil {
		t.Fatal(err)
	}
	c.check(t, w, 0)
}

// TestDrainerDecodeErrors interleaves records of the wrong size and of an
// unknown kind with good ones: the bad are counted and skipped, the good
// arrive.
func TestDrainerDecodeErrors(t *testing.T) {
	events := newRingBuf(t, 64<<10)
	good := newWriter(t, events, writerOptions{})
	bad := []*writer{
		newWriter(t, events, writerOptions{size: 8}),
		newWriter(t, events, writerOptions{size: 16}),
		newWriter(t, events, writerOptions{size: 32}),
		newWriter(t, events, writerOptions{kind: 9}),
	}
	d := newDrainer(t, events, ringbuf.DrainOptions{})
	var nbad uint64
	for i := range 40 {
		good.write(10)
		bad[i%len(bad)].write(3)
		nbad += 3
	}
	c := newSeqCheck()
	if err := d.Run(cancelled(), c.see); err != nil {
		t.Fatal(err)
	}
	c.check(t, good, 0)
	n, _ := good.total()
	if st := d.Stats(); st.Records != n || st.DecodeErrors != nbad {
		t.Errorf("Stats = %+v; want %d records and %d decode errors", st, n, nbad)
	}
}

// TestDrainerAllocs proves that a record costs no allocation on its way
// from the kernel ring into a user ring: decoded in place into a ring with
// room, or into the drainer's batch and pushed into a full ring that drops
// it.
func TestDrainerAllocs(t *testing.T) {
	events := newRingBuf(t, 256<<10)
	w := newWriter(t, events, writerOptions{})
	d := newDrainer(t, events, ringbuf.DrainOptions{})
	r, err := ringbuf.NewRing[testRecord](4096, ringbuf.RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const runs = 100
	w.write(runs + 1) // AllocsPerRun calls f once more to warm up
	var rec testRecord
	one := testing.AllocsPerRun(runs, func() {
		if n, err := d.DrainOne(r); n != 1 || err != nil {
			t.Fatalf("DrainOne: %d, %v", n, err)
		}
		r.Pop(&rec)
	})
	if one != 0 {
		t.Errorf("%v allocations per record", one)
	}
	full, err := ringbuf.NewRing[testRecord](1, ringbuf.RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	full.Push(rec)
	w.write(runs + 1)
	dropped := testing.AllocsPerRun(runs, func() {
		if n, err := d.DrainOne(full); n != 1 || err != nil {
			t.Fatalf("DrainOne: %d, %v", n, err)
		}
	})
	if dropped != 0 || d.Stats().Dropped != runs+1 {
		t.Errorf("%v allocations per record dropped; Stats %+v", dropped, d.Stats())
	}

	if st, written := d.Stats(), uint64(2*(runs+1)); st.Records != written {
		t.Errorf("drained %d records, want %d", st.Records, written)
	}
}

// TestDrainerRunAllocs checks that a whole RunInto, with a cancelled
// context, allocates nothing, for one record or a thousand.
func TestDrainerRunAllocs(t *testing.T) {
	events := newRingBuf(t, 256<<10)
	w := newWriter(t, events, writerOptions{})
	d := newDrainer(t, events, ringbuf.DrainOptions{})
	r, err := ringbuf.NewRing[testRecord](4096, ringbuf.RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf [256]testRecord
	drain := func(n uint32) float64 {
		const runs = 10
		for range runs + 1 {
			w.write(n)
		}
		ctx := cancelled()
		return testing.AllocsPerRun(runs, func() {
			if err := d.RunInto(ctx, r); err != nil {
				t.Fatal(err)
			}
			for r.PopBatch(buf[:]) > 0 {
			}
		})
	}
	if one, many := drain(1), drain(1000); one != 0 || many != 0 {
		t.Errorf("a drain allocated %v times for 1 record, %v for 1000", one, many)
	}
	if written, _ := w.total(); d.Stats().Records != written {
		t.Errorf("drained %d records, want %d", d.Stats().Records, written)
	}
}

// TestDrainerBlockFlushWait drains into a full Block ring whose consumer
// has stopped: after shutdown, the drain waits FlushWait for room, then
// counts what does not fit as dropped.
func TestDrainerBlockFlushWait(t *testing.T) {
	events := newRingBuf(t, 64<<10)
	w := newWriter(t, events, writerOptions{})
	d := newDrainer(t, events, ringbuf.DrainOptions{FlushWait: 20 * time.Millisecond})
	r, err := ringbuf.NewRing[testRecord](4, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		t.Fatal(err)
	}
	w.write(100)
	start := time.Now()
	if err := d.RunInto(cancelled(), r); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 20*time.Millisecond || el > 2*time.Second {
		t.Errorf("RunInto returned after %v, want about 20ms", el)
	}
	if st := d.Stats(); st.Records != 100 || st.Dropped != 96 || r.Len() != 4 {
		t.Errorf("Stats %+v with %d in the ring, want 100 records, 96 dropped, 4 kept", st, r.Len())
	}
}

// TestDrainerClose interrupts a Run with Close.
func TestDrainerClose(t *testing.T) {
	events := newRingBuf(t, 64<<10)
	d, err := ringbuf.NewDrainer(events, decodeTestRecord, ringbuf.DrainOptions{Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background(), func(*testRecord) {}) }()
	time.Sleep(10 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Run after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if f := d.Fill(); f != 0 {
		t.Errorf("Fill after Close: %v", f)
	}
	if err := d.Run(context.Background(), func(*testRecord) {}); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
}

// TestNewDrainerErrors rejects a map that is not a ring buffer and
// negative durations.
func TestNewDrainerErrors(t *testing.T) {
	events := newRingBuf(t, uint32(os.Getpagesize()))
	for _, opts := range []ringbuf.DrainOptions{{Poll: -1}, {FlushWait: -1}} {
		if _, err := ringbuf.NewDrainer(events, decodeTestRecord, opts); err == nil {
			t.Errorf("NewDrainer accepted %+v", opts)
		}
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

package ringbuf_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// newShards returns an array of ring buffers of size bytes, one per
// possible CPU, and the rings.
func newShards(tb testing.TB, size uint32) (outer *ebpf.Map, rings []*ebpf.Map) {
	tb.Helper()
	kerneltest.Require(tb)
	n, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatal(err)
	}
	outer, err = ebpf.NewMap(ringbuf.ShardsSpec(n, size))
	if err != nil {
		tb.Fatalf("create shards: %v", err)
	}
	tb.Cleanup(func() { outer.Close() })
	rings, err = ringbuf.NewShardRings(outer, size)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		for _, r := range rings {
			r.Close()
		}
	})
	return outer, rings
}

// newShardedDrain returns rings of 256 KiB, one per CPU, a writer to them
// (wakeup past 4 KiB) and their ShardedDrainer (a timer of an hour), closed
// when t ends. Each CPU writes 4,000 records of 32 bytes in
// writeOnEveryCPU: a ring holds them all, so none is lost however slow the
// drain.
func newShardedDrain(t *testing.T) ([]*ebpf.Map, *writer, *ringbuf.ShardedDrainer[testRecord]) {
	outer, rings := newShards(t, 256<<10)
	w := newShardWriter(t, outer, writerOptions{wakeup: 4 << 10})
	s, err := ringbuf.NewShardedDrainer(rings, decodeTestRecord, ringbuf.DrainOptions{Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return rings, w, s
}

// TestShardedDrainer writes on every CPU at once, each CPU into its own
// ring, and drains the rings into lanes: every record arrives, in order
// per CPU, through the lane of its CPU, including those left in the rings
// below the wakeup threshold at shutdown.
func TestShardedDrainer(t *testing.T) {
	rings, w, s := newShardedDrain(t)
	if s.NumShards() != len(rings) {
		t.Errorf("NumShards %d for %d rings", s.NumShards(), len(rings))
	}
	lanes, err := ringbuf.NewLanes[testRecord](len(rings), 256, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		t.Fatal(err)
	}
	c := newSeqCheck()
	stopConsumer := make(chan struct{})
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		buf := make([]testRecord, 64)
		for {
			stopped := false
			select {
			case <-stopConsumer:
				stopped = true
			default:
			}
			n := lanes.PopBatch(buf)
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunInto(ctx, lanes) }()

	writeOnEveryCPU(t, w, 20, 200) // 4,000 records a CPU
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunInto: %v", err)
	}
	close(stopConsumer)
	<-consumed

	c.check(t, w, 0)
	for cpu, wc := range w.perCPU() {
		if wc.Full != 0 {
			t.Errorf("cpu %d: %d records found the ring full", cpu, wc.Full)
		}
		if got := lanes.Lane(cpu).Stats().Pushed; got != wc.Written {
			t.Errorf("lane %d got %d records, cpu %d wrote %d", cpu, got, cpu, wc.Written)
		}
	}
	if st := s.Stats(); st.Records != c.received || st.DecodeErrors != 0 || st.Dropped != 0 {
		t.Errorf("Stats %+v, received %d", st, c.received)
	}
	if f := s.Fill(); f != 0 {
		t.Errorf("Fill %v after shutdown", f)
	}
}

// TestShardedDrainerRun writes on every CPU at once and drains the shards
// with Run, whose emit is called from every shard's goroutine: every
// record arrives once, in order per CPU.
func TestShardedDrainerRun(t *testing.T) {
	_, w, s := newShardedDrain(t)
	c := newSeqCheck()
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func(r *testRecord) {
			mu.Lock()
			c.see(r)
			mu.Unlock()
		})
	}()
	writeOnEveryCPU(t, w, 20, 200) // 4,000 records a CPU
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	c.check(t, w, 0)
	if st := s.Stats(); st.Records != c.received || st.DecodeErrors != 0 || st.Dropped != 0 {
		t.Errorf("Stats %+v, received %d", st, c.received)
	}
}

// writeOnEveryCPU has w write runs × perRun records on every CPU at once
// (into each CPU's own ring, if w writes shards), and returns when all are
// written.
func writeOnEveryCPU(t *testing.T, w *writer, runs int, perRun uint32) {
	var producers []<-chan struct{}
	for cpu := range runtime.NumCPU() {
		producers = append(producers, onCPU(cpu, func() {
			for range runs {
				if err := w.run(perRun); err != nil {
					t.Error(err)
					return
				}
			}
		}))
	}
	for _, p := range producers {
		<-p
	}
}

// TestShardsErrors checks the arguments the sharding functions refuse.
func TestShardsErrors(t *testing.T) {
	events := newRingBuf(t, 4096)
	if _, err := ringbuf.NewShardRings(events, 4096); err == nil {
		t.Error("NewShardRings accepted a ring buffer as the array")
	}
	if _, err := ringbuf.NewShardedDrainer(nil, decodeTestRecord, ringbuf.DrainOptions{}); err == nil {
		t.Error("NewShardedDrainer accepted no rings")
	}
	arr, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer arr.Close()
	if _, err := ringbuf.NewShardedDrainer([]*ebpf.Map{events, arr}, decodeTestRecord, ringbuf.DrainOptions{}); err == nil {
		t.Error("NewShardedDrainer accepted an array map")
	}
	_, rings := newShards(t, 4096)
	s, err := ringbuf.NewShardedDrainer(rings, decodeTestRecord, ringbuf.DrainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lanes, err := ringbuf.NewLanes[testRecord](len(rings)+1, 4, ringbuf.RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RunInto(context.Background(), lanes); err == nil {
		t.Error("RunInto accepted more lanes than shards")
	}
}

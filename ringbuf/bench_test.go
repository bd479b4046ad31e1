package ringbuf_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// benchSize is the capacity of every ring and channel benchmarked.
const benchSize = 4096

// BenchmarkHandoff moves uint64 items from the benchmark goroutine to a
// consumer goroutine, one at a time and in batches of 64, through a Ring
// and, as the baseline, a buffered channel of the same capacity. An op is
// one push of one item or of one batch. The ring's consumer pops as many
// items at a time as are pushed, and when it finds the ring empty it idles
// as an aggregator draining on a short timer would ([idler]); single-busy
// instead polls without pause, so that every item crosses between cores on
// its own.
func BenchmarkHandoff(b *testing.B) {
	b.Run("ring/single", func(b *testing.B) { benchRing(b, 1, idle) })
	b.Run("ring/single-busy", func(b *testing.B) { benchRing(b, 1, busyPoll) })
	b.Run("chan/single", func(b *testing.B) { benchChan(b, 1) })
	b.Run("ring/batch64", func(b *testing.B) { benchRing(b, 64, idle) })
	b.Run("chan/batch64", func(b *testing.B) { benchChan(b, 64) })
}

// An idler is how a benchmark consumer waits after finding nothing to pop:
// it yields after a few empty polls and then sleeps, or polls busily.
type idler struct {
	busy  bool
	empty int
}

var (
	idle     = idler{}
	busyPoll = idler{busy: true}
)

func (w *idler) wait() {
	w.empty++
	switch {
	case w.busy && w.empty%64 != 0:
	case w.busy || w.empty <= 4:
		runtime.Gosched()
	default:
		time.Sleep(20 * time.Microsecond)
	}
}

func benchRing(b *testing.B, batch int, w idler) {
	r, err := ringbuf.NewRing[uint64](benchSize, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		b.Fatal(err)
	}
	var done atomic.Bool
	got := make(chan [2]uint64)
	go func() { got <- popRing(r, &done, batch, w) }()

	ctx := context.Background()
	vs := make([]uint64, batch)
	var sent uint64
	b.ReportAllocs()
	for b.Loop() {
		if batch == 1 {
			_ = r.PushWait(ctx, sent)
			sent++
			continue
		}
		for i := range vs {
			vs[i] = sent
			sent++
		}
		_, _ = r.PushBatchWait(ctx, vs)
	}
	done.Store(true)
	checkArrived(b, sent, <-got)
}

// popRing pops from r, one item at a time or in batches, until done is set
// and r is empty, and returns the count and sum of the items.
func popRing(r *ringbuf.Ring[uint64], done *atomic.Bool, batch int, w idler) [2]uint64 {
	var n, sum uint64
	buf := make([]uint64, batch)
	for {
		finished := done.Load()
		k := 0
		if batch == 1 {
			if r.Pop(&buf[0]) {
				k = 1
			}
		} else {
			k = r.PopBatch(buf)
		}
		for _, v := range buf[:k] {
			sum += v
		}
		n += uint64(k)
		if k == 0 {
			if finished {
				return [2]uint64{n, sum}
			}
			w.wait()
		} else {
			w.empty = 0
		}
	}
}

func benchChan(b *testing.B, batch int) {
	ch := make(chan uint64, benchSize)
	got := make(chan [2]uint64)
	go func() {
		var n, sum uint64
		for v := range ch {
			n++
			sum += v
		}
		got <- [2]uint64{n, sum}
	}()

	var sent uint64
	b.ReportAllocs()
	for b.Loop() {
		for range batch {
			ch <- sent
			sent++
		}
	}
	close(ch)
	checkArrived(b, sent, <-got)
}

// checkArrived fails b unless the consumer got items 0 to sent-1, and
// reports the rate at which they were sent.
func checkArrived(b *testing.B, sent uint64, got [2]uint64) {
	b.Helper()
	if got[0] != sent || got[1] != sent*(sent-1)/2 {
		b.Fatalf("sent %d items, received %d with sum %d", sent, got[0], got[1])
	}
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkMPSC has one producer per P (-cpu) make events, each taking
// about as long as decoding a ring-buffer record, and hand them to one
// consumer goroutine singly or in batches of 64: through Lanes, through one
// Ring shared under a mutex, and through a buffered channel. An op is one
// event; "work" is the event-making alone, the ceiling. The consumer pops
// up to 256 items at a time and idles as in [BenchmarkHandoff].
func BenchmarkMPSC(b *testing.B) {
	b.Run("work", func(b *testing.B) {
		var sink atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			x := uint64(1)
			for pb.Next() {
				x = makeEvent(x)
			}
			sink.Add(x)
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
	})
	for _, batch := range []int{64, 1} {
		name := "/batch64"
		if batch == 1 {
			name = "/single"
		}
		b.Run("lanes"+name, func(b *testing.B) { benchLanes(b, batch) })
		b.Run("mutex"+name, func(b *testing.B) { benchMutex(b, batch) })
	}
	b.Run("chan/single", benchMPSCChan)
}

// makeEvent stands for the work of producing one event: about 25 ns.
func makeEvent(x uint64) uint64 {
	for range 16 {
		x ^= x >> 31
		x *= 0x9e3779b97f4a7c15
	}
	return x | 1
}

func benchLanes(b *testing.B, batch int) {
	l, err := ringbuf.NewLanes[uint64](runtime.GOMAXPROCS(0), benchSize, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	runMPSC(b, batch, l.PopBatch, func() func([]uint64) {
		lane := l.Lane(int(next.Add(1) - 1))
		return func(vs []uint64) { _, _ = lane.PushBatchWait(context.Background(), vs) }
	})
}

func benchMutex(b *testing.B, batch int) {
	r, err := ringbuf.NewRing[uint64](benchSize, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	runMPSC(b, batch, r.PopBatch, func() func([]uint64) {
		return func(vs []uint64) {
			mu.Lock()
			_, _ = r.PushBatchWait(context.Background(), vs)
			mu.Unlock()
		}
	})
}

func benchMPSCChan(b *testing.B) {
	ch := make(chan uint64, benchSize)
	pop := func(dst []uint64) int {
		for n := range dst {
			select {
			case dst[n] = <-ch:
			default:
				return n
			}
		}
		return len(dst)
	}
	runMPSC(b, 1, pop, func() func([]uint64) {
		return func(vs []uint64) {
			for _, v := range vs {
				ch <- v
			}
		}
	})
}

// runMPSC runs producers made by newPush under b.RunParallel, each pushing
// batches of batch events, and one consumer calling pop, and checks that
// every event arrived.
func runMPSC(b *testing.B, batch int, pop func([]uint64) int, newPush func() func([]uint64)) {
	var done atomic.Bool
	got := make(chan [2]uint64)
	go func() {
		var n, sum uint64
		buf := make([]uint64, 256)
		w := idle
		for {
			finished := done.Load()
			k := pop(buf)
			for _, v := range buf[:k] {
				sum += v
			}
			n += uint64(k)
			if k > 0 {
				w.empty = 0
				continue
			}
			if finished {
				got <- [2]uint64{n, sum}
				return
			}
			w.wait()
		}
	}()

	var want atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		push := newPush()
		vs := make([]uint64, 0, batch)
		x, sum := uint64(1), uint64(0)
		for pb.Next() {
			x = makeEvent(x)
			sum += x
			if vs = append(vs, x); len(vs) == batch {
				push(vs)
				vs = vs[:0]
			}
		}
		push(vs)
		want.Add(sum)
	})
	done.Store(true)
	if g := <-got; g[0] != uint64(b.N) || g[1] != want.Load() {
		b.Fatalf("sent %d events, received %d", b.N, g[0])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

package ringbuf

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"
)

var policies = []Policy{RejectNewest, OverwriteOldest, Block}

func newRing[T any](t testing.TB, size int, p Policy) *Ring[T] {
	t.Helper()
	r, err := NewRing[T](size, RingOptions{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewRingSize(t *testing.T) {
	for _, size := range []int{-1, 0, 3, 6, 100, MaxRingSize + 1, MaxRingSize + 2} {
		if _, err := NewRing[int](size, RingOptions{}); !errors.Is(err, ErrRingSize) {
			t.Errorf("NewRing(%d): error %v, want ErrRingSize", size, err)
		}
	}
	for _, size := range []int{1, 2, 4, 1024} {
		r, err := NewRing[int](size, RingOptions{})
		if err != nil {
			t.Fatalf("NewRing(%d): %v", size, err)
		}
		if r.Cap() != size || r.Len() != 0 || r.Policy() != RejectNewest {
			t.Errorf("NewRing(%d): Cap %d, Len %d, Policy %v", size, r.Cap(), r.Len(), r.Policy())
		}
	}
	if _, err := NewRing[int](4, RingOptions{Policy: Block + 1}); err == nil {
		t.Error("NewRing with unknown policy: no error")
	}
}

// TestLayout checks that the consumer's index, the producer's index and the
// parking flag sit on different cache lines, away from the read-only fields.
func TestLayout(t *testing.T) {
	var r Ring[byte]
	line := unsafe.Sizeof(cpu.CacheLinePad{})
	offsets := []uintptr{
		unsafe.Offsetof(r.wake) + unsafe.Sizeof(r.wake),
		unsafe.Offsetof(r.head),
		unsafe.Offsetof(r.tail),
		unsafe.Offsetof(r.waiting),
		unsafe.Sizeof(r),
	}
	for i := 1; i < len(offsets); i++ {
		if offsets[i]-offsets[i-1] < line {
			t.Errorf("offsets %v: fewer than %d bytes apart", offsets, line)
		}
	}
}

// TestWrap pushes and pops across the end of the slot array many times, one
// at a time and in batches that straddle it.
func TestWrap(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			r := newRing[int](t, 4, p)
			next, want := 0, 0
			buf := make([]int, 4)
			for round := range 50 {
				k := round%4 + 1
				for i := range k {
					buf[i] = next + i
				}
				if round%2 == 0 {
					if n := r.PushBatch(buf[:k]); n != k {
						t.Fatalf("round %d: PushBatch(%d) = %d", round, k, n)
					}
				} else {
					for i := range k {
						if !r.Push(buf[i]) {
							t.Fatalf("round %d: Push failed", round)
						}
					}
				}
				next += k
				if r.Len() != k {
					t.Fatalf("round %d: Len %d, want %d", round, r.Len(), k)
				}
				got := popAll(r, round%3)
				if !slices.Equal(got, seq(want, next)) {
					t.Fatalf("round %d: popped %v, want %d..%d", round, got, want, next-1)
				}
				want = next
			}
			if s := r.Stats(); s != (RingStats{Pushed: uint64(next), Popped: uint64(next)}) {
				t.Errorf("Stats %+v", s)
			}
		})
	}
}

// popAll pops until the ring is empty, in batches of size batch, or one at
// a time if batch is 0.
func popAll[T any](r *Ring[T], batch int) []T {
	var out []T
	if batch == 0 {
		var v T
		for r.Pop(&v) {
			out = append(out, v)
		}
		return out
	}
	buf := make([]T, batch)
	for n := r.PopBatch(buf); n > 0; n = r.PopBatch(buf) {
		out = append(out, buf[:n]...)
	}
	return out
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestSmallRings(t *testing.T) {
	for _, size := range []int{1, 2} {
		for _, p := range policies {
			t.Run(fmt.Sprintf("%d/%v", size, p), func(t *testing.T) {
				r := newRing[int](t, size, p)
				for i := range size {
					if !r.Push(i) {
						t.Fatalf("Push %d into ring of %d failed", i, size)
					}
				}
				full := r.Push(size)
				if full != (p == OverwriteOldest) {
					t.Errorf("Push into full ring = %v", full)
				}
				want := seq(0, size)
				if p == OverwriteOldest {
					want = seq(1, size+1)
				}
				if got := popAll(r, 0); !slices.Equal(got, want) {
					t.Errorf("popped %v, want %v", got, want)
				}
				var v int
				if r.Pop(&v) || r.PopBatch(make([]int, 2)) != 0 {
					t.Error("pop from empty ring succeeded")
				}
			})
		}
	}
}

func TestRejectNewest(t *testing.T) {
	r := newRing[int](t, 4, RejectNewest)
	if n := r.PushBatch([]int{0, 1, 2}); n != 3 {
		t.Fatalf("PushBatch of 3 = %d", n)
	}
	if n := r.PushBatch([]int{3, 4, 5}); n != 1 {
		t.Fatalf("PushBatch of 3 into 1 free = %d", n)
	}
	if r.Push(6) {
		t.Fatal("Push into full ring succeeded")
	}
	if _, err := r.PushBatchWait(context.Background(), []int{7}); !errors.Is(err, ErrFull) {
		t.Fatalf("PushBatchWait into full ring: %v", err)
	}
	if err := r.PushWait(context.Background(), 8); !errors.Is(err, ErrFull) {
		t.Fatalf("PushWait into full ring: %v", err)
	}
	if got := popAll(r, 3); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Errorf("popped %v", got)
	}
	if s := r.Stats(); s != (RingStats{Pushed: 4, Popped: 4, Dropped: 5}) {
		t.Errorf("Stats %+v", s)
	}
}

func TestOverwriteOldest(t *testing.T) {
	r := newRing[int](t, 4, OverwriteOldest)
	for i := range 6 {
		if !r.Push(i) {
			t.Fatalf("Push %d failed", i)
		}
	}
	if n := r.PushBatch([]int{6, 7, 8}); n != 3 {
		t.Fatalf("PushBatch of 3 = %d", n)
	}
	if got := popAll(r, 2); !slices.Equal(got, []int{5, 6, 7, 8}) {
		t.Errorf("popped %v", got)
	}
	if n := r.PushBatch(seq(9, 19)); n != 10 { // longer than the ring
		t.Fatalf("PushBatch of 10 = %d", n)
	}
	if got := popAll(r, 0); !slices.Equal(got, seq(15, 19)) {
		t.Errorf("popped %v", got)
	}
	if s := r.Stats(); s != (RingStats{Pushed: 19, Popped: 8, Overwritten: 11}) {
		t.Errorf("Stats %+v", s)
	}
}

func TestBlockCancel(t *testing.T) {
	r := newRing[int](t, 2, Block)
	if n := r.PushBatch([]int{0, 1, 2}); n != 2 {
		t.Fatalf("PushBatch of 3 into 2 = %d", n)
	}
	if r.Push(3) {
		t.Fatal("Push into full ring succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := r.PushWait(ctx, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PushWait: %v, want deadline exceeded", err)
	}
	if n, err := r.PushBatchWait(ctx, []int{3, 4}); n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PushBatchWait: %d, %v", n, err)
	}
	if s := r.Stats(); s != (RingStats{Pushed: 2, Waits: 2}) {
		t.Errorf("Stats %+v", s)
	}
}

// TestBlockWake checks that a producer parked on a full ring is woken by
// the consumer.
func TestBlockWake(t *testing.T) {
	r := newRing[int](t, 2, Block)
	r.PushBatch([]int{0, 1})
	done := make(chan error)
	go func() {
		n, err := r.PushBatchWait(context.Background(), []int{2, 3, 4})
		if err == nil && n != 3 {
			err = fmt.Errorf("PushBatchWait = %d", n)
		}
		done <- err
	}()
	for r.waiting.Load() == 0 { // parked
		time.Sleep(time.Millisecond)
	}
	var got []int
	for len(got) < 5 {
		var v int
		if r.Pop(&v) {
			got = append(got, v)
		} else {
			runtime.Gosched()
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, seq(0, 5)) {
		t.Errorf("popped %v", got)
	}
}

func TestZeroLengthBatch(t *testing.T) {
	for _, p := range policies {
		r := newRing[int](t, 1, p)
		r.Push(1)
		if n := r.PushBatch(nil); n != 0 {
			t.Errorf("%v: PushBatch(nil) = %d", p, n)
		}
		if n, err := r.PushBatchWait(context.Background(), []int{}); n != 0 || err != nil {
			t.Errorf("%v: PushBatchWait(empty) = %d, %v", p, n, err)
		}
		if n := r.PopBatch(nil); n != 0 {
			t.Errorf("%v: PopBatch(nil) = %d", p, n)
		}
		if s := r.Stats(); s != (RingStats{Pushed: 1}) {
			t.Errorf("%v: Stats %+v", p, s)
		}
	}
}

func TestAllocs(t *testing.T) {
	r := newRing[[4]uint64](t, 64, RejectNewest)
	l, err := NewLanes[[4]uint64](2, 64, RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lane := l.Lane(1)
	var v [4]uint64
	batch := make([][4]uint64, 16)
	ctx := context.Background()
	for name, f := range map[string]func(){
		"Push":          func() { r.Push(v); r.Pop(&v) },
		"PushBatch":     func() { r.PushBatch(batch); r.PopBatch(batch) },
		"PushWait":      func() { _ = r.PushWait(ctx, v); r.Pop(&v) },
		"PushBatchWait": func() { _, _ = r.PushBatchWait(ctx, batch); r.PopBatch(batch) },
		"Lane.Push":     func() { lane.Push(v); l.Pop(&v) },
		"Lane.Batch":    func() { lane.PushBatch(batch); l.PopBatch(batch) },
		"Stats":         func() { _ = r.Stats(); _ = l.Stats() },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs per run", name, n)
		}
	}
}

// item is a multi-word value whose words are all equal, so that a torn read
// shows. Each word holds a producer id in the top 16 bits and a sequence
// number below.
type item [8]uint64

func makeItem(producer int, seq uint64) item {
	w := uint64(producer)<<48 | seq
	return item{w, w, w, w, w, w, w, w}
}

// pusher is the producer side of a Ring or a Lane.
type pusher interface {
	Push(item) bool
	PushBatch([]item) int
	PushWait(context.Context, item) error
	PushBatchWait(context.Context, []item) (int, error)
}

// popper is the consumer side of a Ring or Lanes.
type popper interface {
	Pop(*item) bool
	PopBatch([]item) int
	Stats() RingStats
}

// stress runs one goroutine per pusher, each pushing n sequence-numbered
// items singly or in batches of varying length, against one consumer. It
// checks that no item is torn, duplicated or out of order, and that every
// missing item is counted as dropped or overwritten.
func stress(t *testing.T, pushers []pusher, c popper, p Policy, batch bool, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var done atomic.Bool
	for id, q := range pushers {
		wg.Go(func() { produce(q, id, p, batch, n) })
	}
	go func() { wg.Wait(); done.Store(true) }()

	last := make([]int64, len(pushers))
	for i := range last {
		last[i] = -1
	}
	var received, gaps uint64
	buf := make([]item, 13)
	for round := 0; ; round++ {
		finished := done.Load()
		k := 0
		if batch || round%2 == 0 {
			k = c.PopBatch(buf[:1+round%len(buf)])
		} else if c.Pop(&buf[0]) {
			k = 1
		}
		for _, it := range buf[:k] {
			id, s := int(it[0]>>48), int64(it[0]&(1<<48-1))
			if it != makeItem(id, uint64(s)) {
				t.Fatalf("torn item %x", it)
			}
			if s <= last[id] {
				t.Fatalf("producer %d: item %d after %d", id, s, last[id])
			}
			gaps += uint64(s - last[id] - 1)
			last[id] = s
		}
		received += uint64(k)
		if k == 0 {
			if finished {
				break
			}
			runtime.Gosched()
		}
	}
	for _, l := range last {
		gaps += uint64(int64(n) - 1 - l)
	}
	s := c.Stats()
	total := uint64(len(pushers) * n)
	if s.Popped != received || s.Pushed != received+s.Overwritten || received+s.Dropped+s.Overwritten != total {
		t.Errorf("received %d of %d; Stats %+v", received, total, s)
	}
	if gaps != s.Dropped+s.Overwritten {
		t.Errorf("%d items missing; Stats %+v", gaps, s)
	}
	switch {
	case p != RejectNewest && s.Dropped != 0,
		p != OverwriteOldest && s.Overwritten != 0,
		p != Block && s.Waits != 0:
		t.Errorf("Stats %+v under %v", s, p)
	}
	t.Logf("%v: received %d of %d, stats %+v", p, received, total, s)
}

// produce pushes items 0 to n-1 of producer id into q.
func produce(q pusher, id int, p Policy, batch bool, n int) {
	ctx := context.Background()
	buf := make([]item, 0, 11)
	for s := range uint64(n) {
		v := makeItem(id, s)
		if !batch {
			if p == Block {
				_ = q.PushWait(ctx, v)
			} else {
				q.Push(v)
			}
			continue
		}
		buf = append(buf, v)
		if len(buf) == cap(buf)-int(s%5) || s == uint64(n-1) {
			if p == Block {
				_, _ = q.PushBatchWait(ctx, buf)
			} else {
				q.PushBatch(buf)
			}
			buf = buf[:0]
		}
		if s%1024 == 0 {
			runtime.Gosched() // let the consumer fall behind or catch up
		}
	}
}

func TestRingStress(t *testing.T) {
	for _, p := range policies {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/batch=%v", p, batch), func(t *testing.T) {
				t.Parallel()
				r := newRing[item](t, 8, p)
				stress(t, []pusher{r}, r, p, batch, 20000)
			})
		}
	}
}

// TestFreeCommit fills free slots in place, as the Drainer does, across the
// end of the slots and up to a full ring, under every policy.
func TestFreeCommit(t *testing.T) {
	for _, p := range policies {
		r := newRing[int](t, 8, p)
		r.PushBatch([]int{0, 1, 2, 3, 4})
		buf := make([]int, 8)
		r.PopBatch(buf[:3]) // 3 and 4 unread; the tail is at slot 5
		next := 5
		fill := func(max int) int {
			s := r.free(max)
			for i := range s {
				s[i] = next + i
			}
			r.commit(len(s))
			next += len(s)
			return len(s)
		}
		if n := fill(8); n != 3 { // up to the end of the slots
			t.Errorf("%v: free gave %d slots before the wrap, want 3", p, n)
		}
		if n := fill(8); n != 3 { // then the 3 released at the start
			t.Errorf("%v: free gave %d slots after the wrap, want 3", p, n)
		}
		if s := r.free(8); len(s) != 0 {
			t.Errorf("%v: free gave %d slots of a full ring", p, len(s))
		}
		if got, want := popAll(r, 3), seq(3, 11); !slices.Equal(got, want) {
			t.Errorf("%v: popped %v, want %v", p, got, want)
		}
		if s := r.Stats(); s != (RingStats{Pushed: 11, Popped: 11}) {
			t.Errorf("%v: Stats %+v", p, s)
		}
	}
}

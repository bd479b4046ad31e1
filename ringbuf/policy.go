package ringbuf

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// Policy says what a push into a full [Ring] does.
type Policy uint8

const (
	// RejectNewest refuses the item being pushed and counts it in
	// [RingStats.Dropped]. It is the default.
	RejectNewest Policy = iota
	// OverwriteOldest discards the oldest unread item to make room and
	// counts it in [RingStats.Overwritten].
	OverwriteOldest
	// Block makes [Ring.PushWait] and [Ring.PushBatchWait] wait for room;
	// [Ring.Push] and [Ring.PushBatch] leave what does not fit with the
	// caller. Nothing is dropped.
	Block
)

// String returns the policy's name.
func (p Policy) String() string {
	switch p {
	case RejectNewest:
		return "reject-newest"
	case OverwriteOldest:
		return "overwrite-oldest"
	case Block:
		return "block"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// RingOptions configure a [Ring] or [Lanes]. The zero value gives a ring
// that rejects pushes when full.
type RingOptions struct {
	// Policy is what a push into a full ring does.
	Policy Policy
}

// RingStats counts a ring's items. Pushed = Popped + Overwritten + Len, and
// the pushes attempted are Pushed + Dropped (plus, under [Block], those the
// caller kept).
type RingStats struct {
	Pushed      uint64 // items stored
	Popped      uint64 // items handed to the consumer
	Dropped     uint64 // items refused because the ring was full (RejectNewest)
	Overwritten uint64 // items discarded unread to make room (OverwriteOldest)
	Waits       uint64 // times a producer found the ring full and waited (Block)
}

// add adds o's counts to s.
func (s *RingStats) add(o RingStats) {
	s.Pushed += o.Pushed
	s.Popped += o.Popped
	s.Dropped += o.Dropped
	s.Overwritten += o.Overwritten
	s.Waits += o.Waits
}

// ErrFull is returned by [Ring.PushWait] and [Ring.PushBatchWait] when, under
// [RejectNewest], items were dropped.
var ErrFull = errors.New("ring full")

// Spinning before yielding, and yielding before parking, bound how long a
// waiting producer burns a CPU.
const (
	spins  = 64
	yields = 16
)

// reserve is the slow path of a push of n items at tail t, n at most the
// ring size: it reloads head and applies the policy. It returns how many of
// the items can be stored.
func (r *Ring[T]) reserve(t, n uint64) uint64 {
	r.cachedHead = r.head.Load() &^ busy
	free := r.size - (t - r.cachedHead)
	if free >= n {
		return n
	}
	switch r.policy {
	case OverwriteOldest:
		r.evict(t + n - r.size)
		return n
	case RejectNewest:
		r.dropped.Add(n - free)
	}
	return free
}

// evict moves head to at least want, counting the items it skips. It waits
// while the consumer is copying items out.
func (r *Ring[T]) evict(want uint64) {
	for i := 0; ; i++ {
		h := r.head.Load()
		if h&^busy >= want {
			r.cachedHead = h &^ busy
			return
		}
		if h&busy == 0 && r.head.CompareAndSwap(h, want) {
			r.overwritten.Add(want - h)
			r.cachedHead = want
			return
		}
		backoff(i)
	}
}

// PushWait is [Ring.Push] that, under [Block], waits for room until ctx is
// done and then returns ctx's error. Under [RejectNewest] it returns
// [ErrFull] if v was dropped. Only the producer may call PushWait.
func (r *Ring[T]) PushWait(ctx context.Context, v T) error {
	for !r.Push(v) {
		if r.policy != Block {
			return ErrFull
		}
		if err := r.waitRoom(ctx); err != nil {
			return err
		}
	}
	return nil
}

// PushBatchWait is [Ring.PushBatch] that, under [Block], waits for room for
// all of vs until ctx is done. It returns how many items it stored, which is
// less than len(vs) only with an error: ctx's, or [ErrFull] if items were
// dropped under [RejectNewest]. Only the producer may call PushBatchWait.
func (r *Ring[T]) PushBatchWait(ctx context.Context, vs []T) (int, error) {
	n := r.PushBatch(vs)
	for n < len(vs) {
		if r.policy != Block {
			return n, ErrFull
		}
		if err := r.waitRoom(ctx); err != nil {
			return n, err
		}
		n += r.PushBatch(vs[n:])
	}
	return n, nil
}

// waitRoom waits until the ring has a free slot: it spins, then yields,
// then parks until the consumer frees a slot.
func (r *Ring[T]) waitRoom(ctx context.Context) error {
	r.waits.Add(1)
	t := r.tail.Load()
	for i := 0; !r.hasRoom(t); i++ {
		if i < spins+yields {
			backoff(i)
			continue
		}
		r.waiting.Store(1)
		if r.hasRoom(t) { // the consumer may have missed waiting
			r.waiting.Store(0)
			return nil
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			r.waiting.Store(0)
			return fmt.Errorf("wait for ring space: %w", ctx.Err())
		}
	}
	return nil
}

// hasRoom reloads head and reports whether a push at tail t fits.
func (r *Ring[T]) hasRoom(t uint64) bool {
	r.cachedHead = r.head.Load() &^ busy
	return t-r.cachedHead < r.size
}

// wakeProducer wakes a producer parked in waitRoom. A wakeup it sends just
// as the producer gives up waiting is left in the channel and costs that
// producer one extra check the next time it parks.
func (r *Ring[T]) wakeProducer() {
	if r.waiting.CompareAndSwap(1, 0) {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// backoff spins for the first spins rounds of a wait, then yields the
// processor.
func backoff(round int) {
	if round >= spins {
		runtime.Gosched()
	}
}

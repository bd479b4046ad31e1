package ringbuf

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// MaxRingSize is the largest size [NewRing] accepts.
const MaxRingSize = 1 << 30

// busy is set in head while an [OverwriteOldest] consumer copies out the
// items it has claimed; the producer then leaves head alone.
const busy = 1 << 63

// ErrRingSize is returned by [NewRing] and [NewLanes] for a size that is not
// a power of two between 1 and [MaxRingSize].
var ErrRingSize = errors.New("size must be a power of two between 1 and 2^30")

// Ring is a bounded single-producer single-consumer queue of T.
//
// One goroutine at a time, the producer, may call [Ring.Push],
// [Ring.PushBatch], [Ring.PushWait] and [Ring.PushBatchWait]. One goroutine
// at a time, the consumer, may call [Ring.Pop] and [Ring.PopBatch]. Any
// goroutine may call [Ring.Len], [Ring.Cap], [Ring.Policy] and [Ring.Stats].
// Handing a role to another goroutine needs a happens-before edge, such as a
// channel send. The zero value is not usable; use [NewRing].
//
// A slot keeps its value after it is popped, until it is overwritten, so
// pointers in T can keep memory reachable for up to Cap pushes more.
//
// The ring holds items at indices head (oldest unread) to tail (next free),
// each a uint64 that only grows and is reduced modulo the power-of-two size to
// find a slot. The producer owns tail and the consumer owns head; each sits on
// its own cache line, and each side keeps a private copy of the other side's
// index, reloading it only when that copy says the ring looks full (or
// empty). So an uncontended push or pop touches no line the other side
// writes, except the slot itself.
//
// Memory ordering: Go's atomics are sequentially consistent, so a store is at
// least a release and a load at least an acquire. The producer writes the
// slots, then stores tail; the consumer loads tail, then reads the slots below
// it, which therefore hold complete values. The consumer reads slots, then
// stores head; the producer loads head, then reuses only slots below
// head+size, so it never writes a slot the consumer is still reading. A batch
// is published by one store of tail and released by one store of head.
//
// Under [OverwriteOldest] the producer also moves head, with a
// compare-and-swap, to discard the oldest items. The consumer then claims
// items before reading them: it swaps head for head with a busy bit set,
// copies, and stores the new head. A claim fails if the producer moved head
// first, and the producer does not move a busy head: it waits, spinning and
// then yielding, for the length of one copy, until the consumer stores it.
// So producer and consumer never touch the same slot at once, and no item is
// ever read torn.
type Ring[T any] struct {
	// Set by NewRing, then only read.
	buf    []T
	mask   uint64
	size   uint64
	policy Policy
	wake   chan struct{} // Block: the consumer wakes a parked producer
	_      cpu.CacheLinePad

	// Consumer side; the producer CASes head under OverwriteOldest.
	head       atomic.Uint64
	cachedTail uint64
	_          cpu.CacheLinePad

	// Producer side.
	tail        atomic.Uint64
	cachedHead  uint64
	dropped     atomic.Uint64
	overwritten atomic.Uint64
	waits       atomic.Uint64
	_           cpu.CacheLinePad

	// waiting is 1 while a Block producer is parked on wake.
	waiting atomic.Uint32
	_       cpu.CacheLinePad
}

// NewRing returns an empty ring of size slots. Size must be a power of two
// between 1 and [MaxRingSize]; other sizes are rejected, not rounded, so
// that the memory used is the memory asked for.
func NewRing[T any](size int, opts RingOptions) (*Ring[T], error) {
	r := new(Ring[T])
	if err := r.init(size, opts); err != nil {
		return nil, fmt.Errorf("create ring: %w", err)
	}
	return r, nil
}

func (r *Ring[T]) init(size int, opts RingOptions) error {
	if size < 1 || size > MaxRingSize || size&(size-1) != 0 {
		return fmt.Errorf("size %d: %w", size, ErrRingSize)
	}
	if opts.Policy > Block {
		return fmt.Errorf("unknown policy %v", opts.Policy)
	}
	r.buf = make([]T, size)
	r.size = uint64(size)
	r.mask = uint64(size - 1)
	r.policy = opts.Policy
	if opts.Policy == Block {
		r.wake = make(chan struct{}, 1)
	}
	return nil
}

// Push adds v and reports whether it was stored. If the ring is full,
// [RejectNewest] drops v and counts it, [OverwriteOldest] discards the oldest
// item and stores v, and [Block] returns false without counting: the caller
// keeps v, and may wait for room with [Ring.PushWait].
// Only the producer may call Push.
func (r *Ring[T]) Push(v T) bool {
	t := r.tail.Load()
	if t-r.cachedHead >= r.size && r.reserve(t, 1) == 0 {
		return false
	}
	r.buf[t&r.mask] = v
	r.tail.Store(t + 1)
	return true
}

// PushBatch adds a prefix of vs, publishing it to the consumer at once, and
// returns its length. If vs does not fit, [RejectNewest] stores what fits and
// drops and counts the rest; [Block] stores what fits and counts nothing;
// [OverwriteOldest] discards the oldest items to store all of vs (of a vs
// longer than the ring, only the last Cap items survive, the others count as
// overwritten). Only the producer may call PushBatch.
func (r *Ring[T]) PushBatch(vs []T) int {
	if uint64(len(vs)) > r.size && r.policy == OverwriteOldest {
		return r.pushChunks(vs)
	}
	t := r.tail.Load()
	n := uint64(len(vs))
	if r.size-(t-r.cachedHead) < n {
		n = r.reserve(t, n)
	}
	if n == 0 {
		return 0
	}
	c := copy(r.buf[t&r.mask:], vs[:n])
	copy(r.buf, vs[c:n])
	r.tail.Store(t + n)
	return int(n)
}

// pushChunks pushes a vs longer than the ring under OverwriteOldest.
func (r *Ring[T]) pushChunks(vs []T) int {
	for i := 0; i < len(vs); i += int(r.size) {
		r.PushBatch(vs[i:min(i+int(r.size), len(vs))])
	}
	return len(vs)
}

// free returns up to max free slots from the tail on, not wrapping past
// the end of the slots, for the producer to fill in place and then publish
// with commit; it returns none if the ring is full. Only the producer may
// call it.
func (r *Ring[T]) free(max int) []T {
	t := r.tail.Load()
	if r.size-(t-r.cachedHead) < uint64(max) {
		r.cachedHead = r.head.Load() &^ busy
	}
	i := t & r.mask
	n := min(r.size-(t-r.cachedHead), uint64(max), r.size-i)
	return r.buf[i : i+n]
}

// commit publishes the first n slots that free returned. Only the producer
// may call it.
func (r *Ring[T]) commit(n int) {
	if n > 0 {
		r.tail.Store(r.tail.Load() + uint64(n))
	}
}

// Pop removes the oldest item into *v and reports whether there was one.
// Only the consumer may call Pop.
func (r *Ring[T]) Pop(v *T) bool {
	var h, n uint64
	if r.policy == OverwriteOldest {
		h, n = r.claim(1)
	} else {
		h, n = r.available(1)
	}
	if n == 0 {
		return false
	}
	*v = r.buf[h&r.mask]
	r.release(h + 1)
	return true
}

// PopBatch removes up to len(dst) of the oldest items into dst, releasing
// their slots to the producer at once, and returns how many it removed.
// Only the consumer may call PopBatch.
func (r *Ring[T]) PopBatch(dst []T) int {
	var h, n uint64
	if r.policy == OverwriteOldest {
		h, n = r.claim(uint64(len(dst)))
	} else {
		h, n = r.available(uint64(len(dst)))
	}
	if n == 0 {
		return 0
	}
	i := h & r.mask
	c := uint64(copy(dst[:n], r.buf[i:]))
	copy(dst[c:n], r.buf)
	r.release(h + n)
	return int(n)
}

// available returns head and how many items, at most max, can be read
// there.
func (r *Ring[T]) available(max uint64) (h, n uint64) {
	h = r.head.Load()
	n = r.cachedTail - h
	if n < max {
		r.cachedTail = r.tail.Load()
		n = r.cachedTail - h
	}
	return h, min(n, max)
}

// claim is available for OverwriteOldest: it sets the busy bit in head, so
// that the producer cannot discard the items while they are read.
func (r *Ring[T]) claim(max uint64) (h, n uint64) {
	for {
		h = r.head.Load()
		n = r.cachedTail - h
		if n < max || n > r.size { // too few, or head passed our copy of tail
			r.cachedTail = r.tail.Load()
			n = r.cachedTail - h
		}
		n = min(n, max)
		if n == 0 || r.head.CompareAndSwap(h, h|busy) {
			return h, n
		}
	}
}

// release stores head once the consumer has read the items below it.
func (r *Ring[T]) release(h uint64) {
	r.head.Store(h)
	if r.policy == Block && r.waiting.Load() != 0 {
		r.wakeProducer()
	}
}

// Len returns the number of unread items at some moment during the call.
func (r *Ring[T]) Len() int {
	h := r.head.Load() &^ busy
	return int(min(r.tail.Load()-h, r.size))
}

// Cap returns the number of slots.
func (r *Ring[T]) Cap() int { return int(r.size) }

// Policy returns the overflow policy the ring was made with.
func (r *Ring[T]) Policy() Policy { return r.policy }

// Stats returns the ring's counts. Each is exact, but they are read one after
// another, so while the ring is in use Popped may briefly include an item
// being overwritten.
func (r *Ring[T]) Stats() RingStats {
	o := r.overwritten.Load() // before head, so that Popped cannot underflow
	h := r.head.Load() &^ busy
	return RingStats{
		Pushed:      r.tail.Load(),
		Popped:      h - o,
		Dropped:     r.dropped.Load(),
		Overwritten: o,
		Waits:       r.waits.Load(),
	}
}

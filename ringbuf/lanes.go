package ringbuf

import (
	"context"
	"fmt"
)

// Lanes is a multi-producer single-consumer queue: one [Ring], a lane, per
// producer, merged by one consumer that visits the lanes in turn. Items from
// one lane come out in the order they were pushed; there is no order between
// lanes.
//
// A lane per producer keeps producers from contending with one another: a
// push touches only its own lane, so producers scale with cores. The
// consumer pays by visiting every lane, so Lanes suits a few producers (one
// per CPU, say). The alternative, one Ring whose producers take turns under
// a mutex, moves the ring's tail and slots between cores on every turn; on
// two cores it hands over about as many items with two producers as with
// one, where Lanes hands over twice as many (BenchmarkMPSC).
//
// Each producer gets its lane once with [Lanes.Lane] and pushes into it; at
// most one goroutine at a time may push into a lane. One goroutine at a time,
// the consumer, may call [Lanes.Pop] and [Lanes.PopBatch]. Any goroutine may
// call [Lanes.Len], [Lanes.Cap] and [Lanes.Stats]. The zero value is not
// usable; use [NewLanes].
type Lanes[T any] struct {
	lanes []Ring[T]
	next  int // the lane the consumer visits first; consumer-owned
}

// NewLanes returns n empty lanes of size slots each, all with the policy in
// opts. Size must be a power of two, as for [NewRing].
func NewLanes[T any](n, size int, opts RingOptions) (*Lanes[T], error) {
	if n < 1 {
		return nil, fmt.Errorf("create lanes: need at least one lane, got %d", n)
	}
	l := &Lanes[T]{lanes: make([]Ring[T], n)}
	for i := range l.lanes {
		if err := l.lanes[i].init(size, opts); err != nil {
			return nil, fmt.Errorf("create lanes: %w", err)
		}
	}
	return l, nil
}

// Lane returns the producer's handle of lane i, 0 <= i < [Lanes.NumLanes].
func (l *Lanes[T]) Lane(i int) Lane[T] { return Lane[T]{&l.lanes[i]} }

// NumLanes returns the number of lanes.
func (l *Lanes[T]) NumLanes() int { return len(l.lanes) }

// Pop removes the oldest item of the next lane that has one into *v and
// reports whether there was one. Only the consumer may call Pop.
func (l *Lanes[T]) Pop(v *T) bool {
	for range l.lanes {
		i := l.next
		if l.next++; l.next == len(l.lanes) {
			l.next = 0
		}
		if l.lanes[i].Pop(v) {
			return true
		}
	}
	return false
}

// PopBatch fills dst from the lanes in turn, each lane's oldest items first,
// and returns how many items it removed. Successive calls start at successive
// lanes, so that a busy lane cannot starve the others. Only the consumer may
// call PopBatch.
func (l *Lanes[T]) PopBatch(dst []T) int {
	n := 0
	i := l.next
	for range l.lanes {
		n += l.lanes[i].PopBatch(dst[n:])
		if i++; i == len(l.lanes) {
			i = 0
		}
		if n == len(dst) {
			break
		}
	}
	if l.next++; l.next == len(l.lanes) {
		l.next = 0
	}
	return n
}

// Len returns the number of unread items in all lanes.
func (l *Lanes[T]) Len() int {
	n := 0
	for i := range l.lanes {
		n += l.lanes[i].Len()
	}
	return n
}

// Cap returns the number of slots in all lanes.
func (l *Lanes[T]) Cap() int { return len(l.lanes) * l.lanes[0].Cap() }

// Stats returns the sum of the lanes' counts.
func (l *Lanes[T]) Stats() RingStats {
	var s RingStats
	for i := range l.lanes {
		s.add(l.lanes[i].Stats())
	}
	return s
}

// Lane is a producer's handle of one lane of a [Lanes]. Its methods are
// those of the lane's [Ring]; at most one goroutine at a time may push.
type Lane[T any] struct{ r *Ring[T] }

// Push is [Ring.Push] on the lane.
func (l Lane[T]) Push(v T) bool { return l.r.Push(v) }

// PushBatch is [Ring.PushBatch] on the lane.
func (l Lane[T]) PushBatch(vs []T) int { return l.r.PushBatch(vs) }

// PushWait is [Ring.PushWait] on the lane.
func (l Lane[T]) PushWait(ctx context.Context, v T) error { return l.r.PushWait(ctx, v) }

// PushBatchWait is [Ring.PushBatchWait] on the lane.
func (l Lane[T]) PushBatchWait(ctx context.Context, vs []T) (int, error) {
	return l.r.PushBatchWait(ctx, vs)
}

// Len returns the number of unread items in the lane.
func (l Lane[T]) Len() int { return l.r.Len() }

// Stats returns the lane's counts.
func (l Lane[T]) Stats() RingStats { return l.r.Stats() }

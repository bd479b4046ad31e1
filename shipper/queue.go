package shipper

import (
	"fmt"
	"sync"
)

// QueuePolicy decides what a full [Queue] drops.
type QueuePolicy uint8

// Queue policies. The zero value is DropByPriority.
const (
	// DropByPriority evicts the oldest datagram of the lowest priority
	// queued when it is below the new datagram's priority, or the oldest of
	// the same priority when they are equal; a new datagram of a lower
	// priority than everything queued is refused.
	DropByPriority QueuePolicy = iota
	// DropOldest evicts the oldest datagram queued.
	DropOldest
	// DropNewest refuses the new datagram.
	DropNewest
	numPolicies
)

var policyNames = [numPolicies]string{"priority", "oldest", "newest"}

// String returns the policy's name, as [ParseQueuePolicy] reads it.
func (p QueuePolicy) String() string {
	if p < numPolicies {
		return policyNames[p]
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// ParseQueuePolicy returns the policy named "priority", "oldest" or
// "newest".
func ParseQueuePolicy(s string) (QueuePolicy, error) {
	for p, name := range policyNames {
		if s == name {
			return QueuePolicy(p), nil
		}
	}
	return 0, fmt.Errorf("parse queue policy %q: want priority, oldest or newest", s)
}

// DefaultQueueCapacity is the queue bound when [QueueOptions.Capacity] is
// zero: 1024 datagrams of 1432 bytes hold 1.4 MiB, a flush of about 30,000
// series.
const DefaultQueueCapacity = 1024

// QueueOptions configure a [Queue]. The zero value works.
type QueueOptions struct {
	// Capacity is the most datagrams queued; zero means
	// [DefaultQueueCapacity].
	Capacity int
	// Policy decides what a full queue drops.
	Policy QueuePolicy
}

// Queue is a bounded queue of ready datagrams, one FIFO per priority. A
// full queue drops by its policy and counts every drop by reason in its
// [SelfCounters]. It is a [Sink] for a [Packer].
//
// Push (through Ship) and Pop may be called from different goroutines;
// every method is safe for concurrent use.
type Queue struct {
	mu      sync.Mutex
	policy  QueuePolicy
	cap     int
	n       int
	seq     uint64
	fifo    [numPriorities]ring
	ready   chan struct{}
	stats   *CounterShard
	dropped *CounterShard // for drops on the consumer's side
}

// ring is a FIFO of datagrams with a fixed capacity.
type ring struct {
	buf        []entry
	head, size int
}

type entry struct {
	d   Datagram
	seq uint64
}

func (r *ring) push(e entry) {
	r.buf[(r.head+r.size)%len(r.buf)] = e
	r.size++
}

func (r *ring) pushFront(e entry) {
	r.head = (r.head + len(r.buf) - 1) % len(r.buf)
	r.buf[r.head] = e
	r.size++
}

func (r *ring) front() *entry { return &r.buf[r.head] }

func (r *ring) pop() entry {
	e := r.buf[r.head]
	r.buf[r.head] = entry{}
	r.head = (r.head + 1) % len(r.buf)
	r.size--
	return e
}

// NewQueue returns an empty queue counting into c: pushes and their drops
// into shard 0, the consumer's drops into shard 1.
func NewQueue(opts QueueOptions, c *SelfCounters) *Queue {
	q := &Queue{policy: opts.Policy, cap: opts.Capacity, ready: make(chan struct{}, 1), stats: c.Shard(0), dropped: c.Shard(1)}
	if q.cap <= 0 {
		q.cap = DefaultQueueCapacity
	}
	for i := range q.fifo {
		q.fifo[i].buf = make([]entry, q.cap)
	}
	return q
}

// Ship queues d, dropping by the queue's policy if it is full.
func (q *Queue) Ship(d Datagram) {
	q.stats.Add(StatDatagramsQueued, 1)
	q.stats.Add(StatLinesQueued, uint64(d.Lines))
	c := d.Priority.class()
	q.mu.Lock()
	if q.n == q.cap {
		victim, reason, ok := q.evict(c)
		if !ok {
			q.mu.Unlock()
			q.drop(q.stats, d, reason)
			return
		}
		defer q.drop(q.stats, victim, reason)
	}
	q.seq++
	q.fifo[c].push(entry{d, q.seq})
	q.n++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// evict makes room for a datagram of class c in a full queue: it returns
// the datagram evicted, or ok false if the new one is to be refused, and
// the reason.
func (q *Queue) evict(c int) (victim Datagram, reason Stat, ok bool) {
	switch q.policy {
	case DropNewest:
		return Datagram{}, StatDroppedNewest, false
	case DropOldest:
		oldest := -1
		for i := range q.fifo {
			if q.fifo[i].size > 0 && (oldest < 0 || q.fifo[i].front().seq < q.fifo[oldest].front().seq) {
				oldest = i
			}
		}
		q.n--
		return q.fifo[oldest].pop().d, StatDroppedOldest, true
	}
	low := 0
	for q.fifo[low].size == 0 {
		low++
	}
	switch {
	case low < c:
		q.n--
		return q.fifo[low].pop().d, StatDroppedPriority, true
	case low == c:
		q.n--
		return q.fifo[low].pop().d, StatDroppedOldest, true
	}
	return Datagram{}, StatDroppedPriority, false
}

// drop counts d as dropped for reason and releases it.
func (q *Queue) drop(sh *CounterShard, d Datagram, reason Stat) {
	sh.Add(reason, 1)
	sh.Add(reason+1, uint64(d.Lines))
	d.Release()
}

// Pop appends up to max datagrams to dst and returns it: highest priority
// first, or oldest first when fifo is set.
func (q *Queue) Pop(dst []Datagram, max int, fifo bool) []Datagram {
	q.mu.Lock()
	defer q.mu.Unlock()
	for range max {
		if q.n == 0 {
			break
		}
		c := numPriorities - 1
		for q.fifo[c].size == 0 {
			c--
		}
		if fifo {
			for i := c - 1; i >= 0; i-- {
				if q.fifo[i].size > 0 && q.fifo[i].front().seq < q.fifo[c].front().seq {
					c = i
				}
			}
		}
		e := q.fifo[c].pop()
		e.d.seq = e.seq
		dst = append(dst, e.d)
		q.n--
	}
	return dst
}

// Requeue puts datagrams that were popped but not sent back at the front
// of their FIFOs, in the order given, to be sent later; those that no
// longer fit are dropped as the oldest. It is called by the consumer.
func (q *Queue) Requeue(ds []Datagram) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := len(ds) - 1; i >= 0; i-- {
		d := ds[i]
		if q.n == q.cap {
			q.drop(q.dropped, d, StatDroppedOldest)
			continue
		}
		q.fifo[d.Priority.class()].pushFront(entry{d, d.seq})
		q.n++
	}
}

// DropAll drops every queued datagram, counted as dropped on close.
func (q *Queue) DropAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range q.fifo {
		for q.fifo[i].size > 0 {
			q.drop(q.dropped, q.fifo[i].pop().d, StatDroppedClosed)
		}
	}
	q.n = 0
}

// Ready returns a channel that receives a value after a push, for a
// consumer waiting for work.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// Len returns the number of queued datagrams.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Cap returns the queue's bound.
func (q *Queue) Cap() int { return q.cap }

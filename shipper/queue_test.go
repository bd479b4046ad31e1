package shipper

import (
	"testing"
)

// dg returns a datagram of lines lines and priority p, tagged by payload.
func dg(pool *bufPool, p Priority, payload string, lines int) Datagram {
	b := pool.get()
	b.b = append(b.b, payload...)
	return Datagram{buf: b, Lines: lines, Priority: p}
}

func payloads(ds []Datagram) (s []string) {
	for _, d := range ds {
		s = append(s, string(d.Bytes()))
	}
	return s
}

func TestQueuePolicies(t *testing.T) {
	pool := newBufPool(64)
	for _, tc := range []struct {
		policy QueuePolicy
		push   []Priority
		want   []string // popped by priority
		reason Stat
	}{
		{DropNewest, []Priority{Normal, Low, Critical, Normal}, []string{"2", "0", "1"}, StatDroppedNewest},
		{DropOldest, []Priority{Normal, Low, Critical, Normal}, []string{"2", "3", "1"}, StatDroppedOldest},
		{DropByPriority, []Priority{Normal, Low, Critical, Normal}, []string{"2", "0", "3"}, StatDroppedPriority},
		{DropByPriority, []Priority{Normal, Normal, Normal, Low}, []string{"0", "1", "2"}, StatDroppedPriority},
		{DropByPriority, []Priority{Normal, Normal, Normal, Normal}, []string{"1", "2", "3"}, StatDroppedOldest},
	} {
		c := NewSelfCounters(2)
		q := NewQueue(QueueOptions{Capacity: 3, Policy: tc.policy}, c)
		for i, p := range tc.push {
			q.Ship(dg(pool, p, string(rune('0'+i)), 2))
		}
		got := payloads(q.Pop(nil, 10, false))
		if len(got) != len(tc.want) || got[0] != tc.want[0] || got[1] != tc.want[1] || got[2] != tc.want[2] {
			t.Errorf("%v %v: popped %q, want %q", tc.policy, tc.push, got, tc.want)
		}
		s := c.Snapshot()
		if s[tc.reason] != 1 || s[tc.reason+1] != 2 {
			t.Errorf("%v %v: drops %v", tc.policy, tc.push, s)
		}
		if d, l := s.Dropped(); d != 1 || l != 2 || s[StatDatagramsQueued] != 4 || s[StatLinesQueued] != 8 {
			t.Errorf("%v: dropped %d datagrams %d lines, queued %d", tc.policy, d, l, s[StatDatagramsQueued])
		}
	}
}

func TestQueueFIFOAndRequeue(t *testing.T) {
	pool := newBufPool(64)
	c := NewSelfCounters(2)
	q := NewQueue(QueueOptions{Capacity: 4}, c)
	for i, p := range []Priority{Low, Critical, Normal} {
		q.Ship(dg(pool, p, string(rune('a'+i)), 1))
	}
	got := q.Pop(nil, 2, true)
	if p := payloads(got); p[0] != "a" || p[1] != "b" {
		t.Fatalf("fifo popped %q", p)
	}
	q.Requeue(got)
	if p := payloads(q.Pop(nil, 3, true)); p[0] != "a" || p[1] != "b" || p[2] != "c" {
		t.Errorf("after requeue popped %q", p)
	}
	q.Ship(dg(pool, Normal, "x", 3))
	q.DropAll()
	if s := c.Snapshot(); s[StatDroppedClosed] != 1 || s[StatDroppedClosedLines] != 3 || q.Len() != 0 {
		t.Errorf("drop all: %v, len %d", s, q.Len())
	}
}

func TestBatcherAdaptive(t *testing.T) {
	b := NewBatcher(BatcherOptions{Size: 8})
	b.Done(8, 4, false)
	if b.Size() != 4 {
		t.Errorf("after partial send: %d", b.Size())
	}
	b.Done(4, 4, true)
	if b.Size() != 2 {
		t.Errorf("after pressure: %d", b.Size())
	}
	b.Done(2, 2, false)
	b.Done(1, 1, false) // a short batch says nothing about room
	if b.Size() != 3 {
		t.Errorf("after full sends: %d", b.Size())
	}
	f := NewBatcher(BatcherOptions{Size: 8, Fixed: true})
	f.Done(8, 0, true)
	if f.Size() != 8 {
		t.Errorf("fixed size changed to %d", f.Size())
	}
}

package shipper

import (
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

func TestSelfCounters(t *testing.T) {
	c := NewSelfCounters(4)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			sh := c.Shard(g)
			for range 1000 {
				sh.Add(StatLinesSent, 2)
				sh.Add(StatDroppedNewest, 1)
			}
		})
	}
	wg.Wait()
	s := c.Snapshot()
	if s[StatLinesSent] != 16000 || s[StatDroppedNewest] != 8000 {
		t.Errorf("snapshot %v", s)
	}
	if d, _ := s.Dropped(); d != 8000 {
		t.Errorf("dropped %d", d)
	}
	if n := testing.AllocsPerRun(1000, func() { c.Shard(1).Add(StatSendCalls, 1) }); n != 0 {
		t.Errorf("Add: %v allocs", n)
	}
	// The counters of two shards are at least a cache line apart.
	var two [2]CounterShard
	gap := uintptr(unsafe.Pointer(&two[1].v)) - uintptr(unsafe.Pointer(&two[0].v[numStats-1])) - 8
	if gap < 64 {
		t.Errorf("shards' counters %d bytes apart", gap)
	}
	for s := range numStats {
		if s.String() == "" {
			t.Errorf("stat %d has no name", s)
		}
	}
}

func BenchmarkSelfCounters(b *testing.B) {
	b.Run("sharded", func(b *testing.B) {
		c := NewSelfCounters(64)
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			sh := c.Shard(int(next.Add(1)))
			for pb.Next() {
				sh.Add(StatLinesSent, 1)
			}
		})
	})
	b.Run("shared", func(b *testing.B) {
		var v atomic.Uint64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				v.Add(1)
			}
		})
	})
}

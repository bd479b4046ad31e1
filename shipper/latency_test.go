package shipper

import (
	"testing"
	"time"
)

func TestLatency(t *testing.T) {
	var now int64
	l := NewLatency(LatencyOptions{Every: 10, Window: 100, Now: func() int64 { return now }})
	// 1000 events with timestamps 0..999 µs: samples at 9, 19, ..., 999.
	for i := range 1000 {
		l.Event(uint64(i) * 1000)
	}
	l.seal(1)
	now = 2_000_000 // 2 ms
	l.sent(1)
	s := l.Stats()
	if s.Samples != 100 || s.Lost != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Latencies 2000-9..2000-999 µs, i.e. 1001..1991 µs.
	if s.Max != 1991*time.Microsecond || s.P50 != 1491*time.Microsecond || s.P99 != 1981*time.Microsecond {
		t.Errorf("stats %+v", s)
	}
	// Samples of a generation whose send is never seen are bounded.
	for g := range uint64(maxSealed + 3) {
		for range 10 {
			l.Event(0)
		}
		l.seal(g + 10)
	}
	if s := l.Stats(); s.Lost != 3 {
		t.Errorf("lost %d", s.Lost)
	}
	if n := testing.AllocsPerRun(1000, func() { l.Event(1) }); n != 0 {
		t.Errorf("Event: %v allocs", n)
	}
}

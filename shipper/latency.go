package shipper

import (
	"slices"
	"sync"
	"time"
)

// Latency defaults, used where an option is zero.
const (
	// DefaultLatencyEvery samples one event in 100.
	DefaultLatencyEvery = 100
	// DefaultLatencyWindow is how many latencies the percentiles cover.
	DefaultLatencyWindow = 1024
	// maxSealed bounds the flushes waiting to be sent.
	maxSealed = 16
)

// LatencyOptions configure a [Latency] tracker. The zero value works.
type LatencyOptions struct {
	// Every samples one event in Every; zero means [DefaultLatencyEvery].
	Every int
	// Window is how many recent latencies the percentiles cover, and the
	// most samples waiting for one flush; zero means
	// [DefaultLatencyWindow].
	Window int
	// Now returns the time in nanoseconds on the clock of the event
	// timestamps; nil means CLOCK_MONOTONIC, the clock of the kernel's
	// bpf_ktime_get_ns.
	Now func() int64
}

// LatencyStats summarise the latencies from event to send.
type LatencyStats struct {
	Samples       uint64 // latencies measured since the tracker started
	Lost          uint64 // samples dropped: too many at once, or never sent
	P50, P99, Max time.Duration
}

// Latency tracks, for a sample of events, the time from the event's kernel
// timestamp to the send of the datagrams of the flush that carried it.
//
// Event belongs to one producing goroutine; the shipper calls the other
// methods from its goroutines; Stats may be called from any goroutine.
type Latency struct {
	every uint32
	n     uint32 // events since the last sample; the producer's own
	now   func() int64

	mu      sync.Mutex
	pending []int64 // sampled timestamps since the last flush
	sealed  []sealedGroup
	window  []time.Duration
	wpos    int
	samples uint64
	lost    uint64
	max     time.Duration
}

type sealedGroup struct {
	gen uint64
	ts  []int64
}

// NewLatency returns a Latency tracker.
func NewLatency(opts LatencyOptions) *Latency {
	l := &Latency{every: uint32(opts.Every), now: opts.Now}
	if opts.Every <= 0 {
		l.every = DefaultLatencyEvery
	}
	w := opts.Window
	if w <= 0 {
		w = DefaultLatencyWindow
	}
	if l.now == nil {
		l.now = monotonicNow
	}
	l.pending = make([]int64, 0, w)
	l.window = make([]time.Duration, 0, w)
	return l
}

// Event counts one event with kernel timestamp ts (nanoseconds) and samples
// one in Every. Unsampled events cost a counter increment; none allocates.
func (l *Latency) Event(ts uint64) {
	l.n++
	if l.n < l.every {
		return
	}
	l.n = 0
	l.mu.Lock()
	if len(l.pending) < cap(l.pending) {
		l.pending = append(l.pending, int64(ts))
	} else {
		l.lost++
	}
	l.mu.Unlock()
}

// seal hands the samples taken so far to flush generation gen.
func (l *Latency) seal(gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		return
	}
	if len(l.sealed) == maxSealed {
		l.lost += uint64(len(l.sealed[0].ts))
		l.sealed = slices.Delete(l.sealed, 0, 1)
	}
	l.sealed = append(l.sealed, sealedGroup{gen, slices.Clone(l.pending)})
	l.pending = l.pending[:0]
}

// sent records that the last datagram of generation gen was sent now:
// every sample of it and of earlier generations is measured.
func (l *Latency) sent(gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.sealed) == 0 || l.sealed[0].gen > gen {
		return
	}
	now := l.now()
	i := 0
	for ; i < len(l.sealed) && l.sealed[i].gen <= gen; i++ {
		for _, ts := range l.sealed[i].ts {
			l.record(time.Duration(now - ts))
		}
	}
	l.sealed = slices.Delete(l.sealed, 0, i)
}

func (l *Latency) record(d time.Duration) {
	d = max(d, 0)
	if len(l.window) < cap(l.window) {
		l.window = append(l.window, d)
	} else {
		l.window[l.wpos] = d
		l.wpos = (l.wpos + 1) % len(l.window)
	}
	l.samples++
	l.max = max(l.max, d)
}

// Stats returns the percentiles of the recent latencies and the largest
// seen since the tracker started.
func (l *Latency) Stats() LatencyStats {
	l.mu.Lock()
	w := slices.Clone(l.window)
	s := LatencyStats{Samples: l.samples, Lost: l.lost, Max: l.max}
	l.mu.Unlock()
	if len(w) == 0 {
		return s
	}
	slices.Sort(w)
	s.P50 = w[(len(w)-1)*50/100]
	s.P99 = w[(len(w)-1)*99/100]
	return s
}

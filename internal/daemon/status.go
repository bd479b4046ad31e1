package daemon

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/admin"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// status keeps what the admin socket reports. update is called by the
// flush loop once per interval; snapshot by the admin server's goroutines.
type status struct {
	started time.Time
	output  string
	srcs    []source
	ship    *shipper.Shipper
	health  *shipper.Health
	maxDrop float64

	mu     sync.Mutex
	last   time.Time
	iv     interval
	rates  []float64 // events/s per source over the last interval
	unwell []string  // reasons from the last interval
}

func newStatus(cfg Config, srcs []source, ship *shipper.Shipper, health *shipper.Health) *status {
	now := time.Now()
	return &status{started: now, last: now, output: cfg.Output.String(), srcs: srcs, ship: ship, health: health,
		maxDrop: cfg.MaxKernelDropRatio}
}

// update records one interval.
func (s *status) update(iv interval) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	secs := max(now.Sub(s.last).Seconds(), 1e-9)
	s.rates = s.rates[:0]
	for _, src := range s.srcs {
		var delta uint64
		for _, p := range src.programs() {
			delta += ledgerAt(iv.ledgers, p).Seen - ledgerAt(s.iv.ledgers, p).Seen
		}
		s.rates = append(s.rates, float64(delta)/secs)
	}
	s.unwell = s.unwell[:0]
	if full := iv.signals.KernelDrops; iv.written > 0 && float64(full)/float64(iv.written) > s.maxDrop {
		s.unwell = append(s.unwell, fmt.Sprintf("kernel dropped %d of %d records (%.1f%%) in the last interval: ring full (raise --ring-size)",
			full, iv.written, 100*float64(full)/float64(iv.written)))
	}
	if st := s.ship.Breaker(); st != shipper.BreakerClosed {
		reason := "circuit breaker " + st.String()
		if err := s.ship.Err(); err != nil {
			reason += ": " + err.Error()
		}
		s.unwell = append(s.unwell, reason)
	}
	s.iv, s.last = iv, now
}

func ledgerAt(ledgers []bpf.Ledger, p bpf.Program) bpf.Ledger {
	if int(p) < len(ledgers) {
		return ledgers[p]
	}
	return bpf.Ledger{}
}

// snapshot builds what the admin socket answers.
func (s *status) snapshot() admin.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	level := s.health.Level()
	lat := s.ship.Latency().Stats()
	snap := admin.Snapshot{
		PID:       os.Getpid(),
		Started:   s.started,
		Uptime:    admin.Duration(time.Since(s.started)),
		Output:    s.output,
		Throttle:  admin.Throttle{Level: int(level), SampleRate: level.SampleEvery()},
		Breaker:   s.ship.Breaker().String(),
		Latency:   admin.Latency{P50: admin.Duration(lat.P50), P99: admin.Duration(lat.P99), Max: admin.Duration(lat.Max)},
		RSSBytes:  rss(),
		HeapBytes: shipper.HeapBytes(),
		// Goroutines lets a soak test see leaks without a profile.
		Goroutines: runtime.NumGoroutine(),
	}
	for i, src := range s.srcs {
		cs := admin.CollectorStatus{Name: src.collector().Name(), Programs: len(src.programs())}
		for _, p := range src.programs() {
			l := ledgerAt(s.iv.ledgers, p)
			cs.Events += l.Seen
			snap.Ledgers = append(snap.Ledgers, admin.Ledger{Program: p.String(), Seen: l.Seen, Emitted: l.Emitted, RingFull: l.RingFull,
				SampledOut: l.SampledOut, Pending: l.Pending, Records: l.Records})
			snap.Drops = append(snap.Drops,
				admin.Drop{Stage: "kernel", Reason: "ring_full", Source: p.String(), Count: l.RingFull},
				// The events the lost records stood for: ring_full times
				// the sample rate each was taken at.
				admin.Drop{Stage: "kernel", Reason: "ring_full_events", Source: p.String(), Count: l.RingFullEvents},
				admin.Drop{Stage: "kernel", Reason: "sampled_out", Source: p.String(), Count: l.SampledOut})
		}
		if _, ok := src.collector().(bpf.MissCounter); ok && i < len(s.iv.misses) {
			// Events the kernel did not run the collector's programs for:
			// in no ledger slot, not even seen.
			snap.Drops = append(snap.Drops, admin.Drop{Stage: "kernel", Reason: "not_run", Source: src.collector().Name(), Count: s.iv.misses[i]})
		}
		if i < len(s.rates) {
			cs.EventsPerSec = s.rates[i]
		}
		snap.Collectors = append(snap.Collectors, cs)
	}
	c := s.iv.shipped
	snap.Drops = append(snap.Drops,
		admin.Drop{Stage: "drain", Reason: "decode_error", Count: s.iv.drain.DecodeErrors},
		admin.Drop{Stage: "user_ring", Reason: "dropped", Count: s.iv.drain.Dropped},
		admin.Drop{Stage: "queue", Reason: "dropped_oldest", Count: c[shipper.StatDroppedOldestLines]},
		admin.Drop{Stage: "queue", Reason: "dropped_newest", Count: c[shipper.StatDroppedNewestLines]},
		admin.Drop{Stage: "queue", Reason: "dropped_for_priority", Count: c[shipper.StatDroppedPriorityLine]},
		admin.Drop{Stage: "queue", Reason: "left_at_shutdown", Count: c[shipper.StatDroppedClosedLines]},
		admin.Drop{Stage: "send", Reason: "failed", Count: c[shipper.StatLinesFailed]},
		admin.Drop{Stage: "send", Reason: "too_long", Count: c[shipper.StatLinesTooLong]},
		admin.Drop{Stage: "send", Reason: "rejected_by_dialect", Count: c[shipper.StatLinesRejected]},
	)
	snap.Health = admin.Health{Healthy: len(s.unwell) == 0, Reasons: append([]string(nil), s.unwell...)}
	return snap
}

// rss reads the process's resident set size from /proc/self/statm.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

package daemon

import (
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/admin"
	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// programmer is a collector that names its programs in the drop ledger.
type programmer interface {
	Programs() []bpf.Program
}

// status keeps what the admin socket reports. update is called by the
// flush loop once per interval; snapshot by the admin server's goroutines.
type status struct {
	started    time.Time
	output     string
	collectors []bpf.Collector
	maxDrop    float64

	mu       sync.Mutex
	last     time.Time
	ledgers  []bpf.Ledger
	rates    []float64 // events/s per collector over the last interval
	drain    ringbuf.DrainStats
	shipDrop uint64
	unwell   []string // reasons from the last interval
}

func newStatus(cfg Config, collectors []bpf.Collector) *status {
	now := time.Now()
	return &status{started: now, last: now, output: cfg.Output.String(), collectors: collectors, maxDrop: cfg.MaxKernelDropRatio}
}

// update records one interval's cumulative counters.
func (s *status) update(ledgers []bpf.Ledger, drain ringbuf.DrainStats, shipDropped uint64) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	secs := now.Sub(s.last).Seconds()
	s.rates = s.rates[:0]
	var seen, full uint64
	for _, c := range s.collectors {
		var delta uint64
		for _, p := range programsOf(c) {
			if int(p) < len(ledgers) {
				d := ledgers[p].Seen - s.ledgerAt(p).Seen
				delta += d
				seen += d
				full += ledgers[p].RingFull - s.ledgerAt(p).RingFull
			}
		}
		s.rates = append(s.rates, float64(delta)/max(secs, 1e-9))
	}
	s.unwell = s.unwell[:0]
	if seen > 0 && float64(full)/float64(seen) > s.maxDrop {
		s.unwell = append(s.unwell, fmt.Sprintf("kernel dropped %d of %d events (%.1f%%) in the last interval: ring full (raise --ring-size)",
			full, seen, 100*float64(full)/float64(seen)))
	}
	s.ledgers, s.drain, s.shipDrop, s.last = ledgers, drain, shipDropped, now
}

func (s *status) ledgerAt(p bpf.Program) bpf.Ledger {
	if int(p) < len(s.ledgers) {
		return s.ledgers[p]
	}
	return bpf.Ledger{}
}

func programsOf(c bpf.Collector) []bpf.Program {
	if p, ok := c.(programmer); ok {
		return p.Programs()
	}
	return nil
}

// snapshot builds what the admin socket answers.
func (s *status) snapshot() admin.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := admin.Snapshot{
		PID:      os.Getpid(),
		Started:  s.started,
		Uptime:   admin.Duration(time.Since(s.started)),
		Output:   s.output,
		Throttle: admin.Throttle{SampleRate: 1},
		Breaker:  "closed",
		RSSBytes: rss(),
	}
	snap.HeapBytes = heapBytes()
	for i, c := range s.collectors {
		cs := admin.CollectorStatus{Name: c.Name(), Programs: len(programsOf(c))}
		for _, p := range programsOf(c) {
			cs.Events += s.ledgerAt(p).Seen
		}
		if i < len(s.rates) {
			cs.EventsPerSec = s.rates[i]
		}
		snap.Collectors = append(snap.Collectors, cs)
		for _, p := range programsOf(c) {
			l := s.ledgerAt(p)
			snap.Drops = append(snap.Drops,
				admin.Drop{Stage: "kernel", Reason: "ring_full", Source: p.String(), Count: l.RingFull},
				admin.Drop{Stage: "kernel", Reason: "sampled_out", Source: p.String(), Count: l.SampledOut})
		}
	}
	snap.Drops = append(snap.Drops,
		admin.Drop{Stage: "drain", Reason: "decode_error", Count: s.drain.DecodeErrors},
		admin.Drop{Stage: "send", Reason: "lines_dropped", Count: s.shipDrop})
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

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/ringbuf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// Metrics about bpfstatd itself, shipped every interval even when zero.
const (
	MetricKernelSeen   = "bpfstatd.kernel.seen"
	MetricRingFull     = "bpfstatd.kernel.ring_full"
	MetricSampledOut   = "bpfstatd.kernel.sampled_out"
	MetricDrainRecords = "bpfstatd.drain.records"
	MetricDecodeErrors = "bpfstatd.drain.decode_errors"
	MetricLinesDropped = "bpfstatd.ship.lines_dropped"
	MetricThrottle     = "bpfstatd.throttle.level"
	MetricBreakerOpen  = "bpfstatd.breaker.open"
	MetricDrops        = "bpfstatd.drops"
)

// userDrops are the user-space stages and reasons of the drop ledger that
// ship as bpfstatd.drops{stage,reason}, as --drops shows them.
var userDrops = [...]struct {
	stage, reason string
	stat          shipper.Stat
}{
	{"queue", "dropped_oldest", shipper.StatDroppedOldestLines},
	{"queue", "dropped_newest", shipper.StatDroppedNewestLines},
	{"queue", "dropped_for_priority", shipper.StatDroppedPriorityLine},
	{"queue", "left_at_shutdown", shipper.StatDroppedClosedLines},
	{"send", "failed", shipper.StatLinesFailed},
	{"send", "too_long", shipper.StatLinesTooLong},
	{"send", "rejected_by_dialect", shipper.StatLinesRejected},
}

// Kernel drops, beside the user-space ones, that ship as
// bpfstatd.drops{stage,reason}: the events that records lost to a full ring
// stood for (ring_full times their sample rate), the events the kernel did
// not run a program for (its recursion check), the records the drain could
// not hand to the pipeline, and, at shutdown, records the programs wrote
// that the drain never read.
const (
	dropRingFullEvents = iota
	dropNotRun
	dropUserRing
	dropUnread
	numOtherDrops
)

var otherDrops = [numOtherDrops]struct{ stage, reason string }{
	dropRingFullEvents: {"kernel", "ring_full_events"},
	dropNotRun:         {"kernel", "not_run"},
	dropUserRing:       {"user_ring", "dropped"},
	dropUnread:         {"drain", "unread"},
}

var selfCounters = [...]string{MetricKernelSeen, MetricRingFull, MetricSampledOut, MetricDrainRecords, MetricDecodeErrors, MetricLinesDropped}

// pipeline aggregates ring records and kernel counters per flush interval
// and ships them. add is called by the drain goroutine; flush by the flush
// loop; mu guards the interner, the aggregator and the sources between
// them.
type pipeline struct {
	mu      sync.Mutex
	in      *shipper.Interner
	agg     *shipper.Aggregator
	ship    *shipper.Shipper
	latency *shipper.Latency
	srcs    []source
	byKind  [8]source // ring record kind -> source
	self    [len(selfCounters)]shipper.Key
	level   shipper.Key
	breaker shipper.Key
	drops   [len(userDrops)]shipper.Key
	other   [numOtherDrops]shipper.Key

	// cumulative counts at the last flush, for deltas
	lastLedger []bpf.Ledger
	lastMisses []uint64 // per source
	lastDrain  ringbuf.DrainStats
	lastCounts shipper.Counts
	lastSent   uint64
}

// interval is what one flush measured, for the health monitor and status.
type interval struct {
	ledgers  []bpf.Ledger
	signals  shipper.Signals
	shipped  shipper.Counts
	drain    ringbuf.DrainStats
	linesOut uint64 // lines lost in user space since start
	// written counts the events the programs tried to write in the
	// interval (emitted + ring_full), against which ring_full is a loss.
	written uint64
	// misses counts, per source, the events its programs were not run for,
	// since start.
	misses []uint64
	// unread counts the records the programs wrote that the drain did not
	// read; only a final flush, with the programs detached and the ring
	// drained, can tell.
	unread uint64
}

// recordKinds says which source handles each ring record kind.
var recordKinds = map[bpf.Kind]string{
	bpf.KindExec: "process", bpf.KindExit: "process", bpf.KindFork: "process",
	bpf.KindTCP: "tcp", bpf.KindOOM: "oom", bpf.KindSyscall: "syscalls",
}

func newPipeline(ship *shipper.Shipper, srcs []source, cfg Config) (*pipeline, error) {
	in, err := shipper.NewInterner(shipper.InternerOptions{Tags: cfg.Tags, MaxSeries: cfg.MaxSeries})
	if err != nil {
		return nil, err
	}
	p := &pipeline{
		in:      in,
		agg:     shipper.NewAggregator(in, shipper.AggregatorOptions{IdleIntervals: 60}),
		ship:    ship,
		latency: ship.Latency(),
		srcs:    srcs,

		lastMisses: make([]uint64, len(srcs)),
	}
	r := &registrar{in: in}
	for i, name := range selfCounters {
		if m := r.metric(shipper.MetricSpec{Name: name, Priority: shipper.Critical, KeepZero: true}); m != nil {
			p.self[i] = m.Key()
		}
	}
	if m := r.metric(shipper.MetricSpec{Name: MetricThrottle, Kind: shipper.Gauge, Priority: shipper.Critical}); m != nil {
		p.level = m.Key()
	}
	if m := r.metric(shipper.MetricSpec{Name: MetricBreakerOpen, Kind: shipper.Gauge, Priority: shipper.Critical}); m != nil {
		p.breaker = m.Key()
	}
	if m := r.metric(shipper.MetricSpec{Name: MetricDrops, TagKeys: []string{"stage", "reason"}, Priority: shipper.Critical,
		KeepZero: true}); m != nil {
		for i, d := range userDrops {
			p.drops[i] = m.Key([]byte(d.stage), []byte(d.reason))
		}
		for i, d := range otherDrops {
			p.other[i] = m.Key([]byte(d.stage), []byte(d.reason))
		}
	}
	for _, s := range srcs {
		s.register(r)
		for kind, name := range recordKinds {
			if name == s.collector().Name() {
				p.byKind[kind] = s
			}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return p, nil
}

// add aggregates one ring record, scaled by its sampling rate. It is the
// emit of the drain goroutine (or goroutines, one per ring shard), and
// takes the lock for the record alone.
//
// The lock is uncontended but for the flush once an interval, and costs
// a few nanoseconds a record. Handing batches through a ring to a
// goroutine of the pipeline's own, so as to lock once per batch, cost
// more on a two-core host: its wakeups, while the drain goroutine sleeps
// in a system call, keep the Go runtime retaking processors and its
// sysmon thread awake (daemon CPU at 100 k records/s went from 5% to 10%).
func (p *pipeline) add(r *bpf.Record) {
	if int(r.Kind) >= len(p.byKind) || p.byKind[r.Kind] == nil {
		return
	}
	p.mu.Lock()
	if r.TimeNS != 0 { // records without a timestamp (most syscall records) say nothing of latency
		p.latency.Event(r.TimeNS)
	}
	p.byKind[r.Kind].record(r, p.agg)
	p.mu.Unlock()
}

// ledgerReader reads the kernel drop ledger, as [bpf.Shared] does.
type ledgerReader interface {
	Ledgers() ([]bpf.Ledger, error)
}

// drainReader is what a flush reads of the drain, a
// [ringbuf.Drainer][bpf.Record].
type drainReader interface {
	Stats() ringbuf.DrainStats
	Fill() float64
}

// flush reads the kernel counters, adds bpfstatd's own, packs the interval
// and sends it. It returns what it measured, and the first error. A final
// flush, at shutdown, packs every series, including low-priority ones
// that shedding at level would defer to an interval that never comes, and
// those an open breaker holds back: what cannot be sent is then counted
// as left at shutdown.
func (p *pipeline) flush(sh ledgerReader, drain drainReader, level shipper.Level, final bool) (interval, error) {
	var errs []error
	ledgers, err := sh.Ledgers()
	if err != nil {
		errs = append(errs, fmt.Errorf("read kernel ledger: %w", err))
		ledgers = p.lastLedger
	}
	iv := interval{ledgers: ledgers, drain: drain.Stats()}
	iv.signals.RingFill = drain.Fill()
	var seen, full, fullEvents, sampled, emitted uint64
	for i, l := range ledgers {
		var last bpf.Ledger
		if i < len(p.lastLedger) {
			last = p.lastLedger[i]
		}
		seen += l.Seen - last.Seen
		full += l.RingFull - last.RingFull
		fullEvents += l.RingFullEvents - last.RingFullEvents
		sampled += l.SampledOut - last.SampledOut
		emitted += l.Emitted - last.Emitted
	}
	iv.signals.Events, iv.signals.KernelDrops = seen, full
	iv.written = emitted + full
	var notRun uint64
	iv.misses = make([]uint64, len(p.srcs))
	for i, s := range p.srcs {
		m, ok := s.collector().(bpf.MissCounter)
		if !ok {
			continue
		}
		n, err := m.Misses()
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s collector: %w", s.collector().Name(), err))
			n = p.lastMisses[i]
		}
		iv.misses[i] = n
		notRun += n - p.lastMisses[i]
	}
	if final {
		iv.unread = unread(ledgers, iv.drain)
	}

	// Aggregate under the lock the drain goroutine takes; send outside it,
	// so that a slow socket never stalls the drain.
	p.mu.Lock()
	for _, s := range p.srcs {
		if err := s.read(p.agg); err != nil {
			errs = append(errs, err)
		}
	}
	c := p.ship.Stats().Counts
	dropped := linesLost(c)
	for i, v := range [...]uint64{seen, full, sampled,
		iv.drain.Records - p.lastDrain.Records, iv.drain.DecodeErrors - p.lastDrain.DecodeErrors,
		dropped - linesLost(p.lastCounts)} {
		p.agg.Add(p.self[i], int64(v))
	}
	for i, d := range userDrops {
		p.agg.Add(p.drops[i], int64(c[d.stat]-p.lastCounts[d.stat]))
	}
	p.agg.Add(p.other[dropRingFullEvents], int64(fullEvents))
	p.agg.Add(p.other[dropNotRun], int64(notRun))
	p.agg.Add(p.other[dropUserRing], int64(iv.drain.Dropped-p.lastDrain.Dropped))
	p.agg.Add(p.other[dropUnread], int64(iv.unread))
	open := 0.0
	if p.ship.Breaker() != shipper.BreakerClosed {
		open = 1
	}
	p.agg.Set(p.breaker, open)
	p.agg.Set(p.level, float64(level))
	if final {
		p.agg.SetShed(1)
		p.ship.FlushFinal(p.agg)
	} else {
		p.agg.SetShed(level.Shed())
		p.ship.Flush(p.agg)
	}
	p.mu.Unlock()
	p.ship.Send(context.Background())

	p.lastCounts = p.ship.FillSignals(&iv.signals, p.lastCounts)
	iv.signals.HeapBytes = shipper.HeapBytes()
	iv.shipped, iv.linesOut = p.lastCounts, linesLost(p.lastCounts)
	if failed := p.lastCounts[shipper.StatDatagramsFailed]; failed != p.lastSent {
		errs = append(errs, fmt.Errorf("send %d datagrams: %w", failed-p.lastSent, p.ship.Err()))
		p.lastSent = failed
	}
	p.lastLedger, p.lastDrain, p.lastMisses = ledgers, iv.drain, iv.misses
	return iv, errors.Join(errs...)
}

// unread returns the records the ring-buffer programs wrote that the drain
// neither decoded nor counted as malformed. Once the programs are detached
// and the ring drained, it is a loss; while they run, it is what the ring
// holds.
func unread(ledgers []bpf.Ledger, drain ringbuf.DrainStats) uint64 {
	var emitted uint64
	for i, l := range ledgers {
		if bpf.Program(i).WritesRecords() {
			emitted += l.Records
		}
	}
	if read := drain.Records + drain.DecodeErrors; emitted > read {
		return emitted - read
	}
	return 0
}

// linesLost counts the lines lost in user space: dropped from the queue,
// failed to send, too long for a datagram, or rejected by the dialect.
func linesLost(c shipper.Counts) uint64 {
	_, dropped := c.Dropped()
	return dropped + c[shipper.StatLinesFailed] + c[shipper.StatLinesTooLong] + c[shipper.StatLinesRejected]
}

package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/ringbuf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// Metric names shipped by the process collector and about bpfstatd itself.
const (
	MetricExec         = "host.process.exec"
	MetricExit         = "host.process.exit"
	MetricFork         = "host.process.fork"
	MetricKernelSeen   = "bpfstatd.kernel.seen"
	MetricRingFull     = "bpfstatd.kernel.ring_full"
	MetricSampledOut   = "bpfstatd.kernel.sampled_out"
	MetricDrainRecords = "bpfstatd.drain.records"
	MetricDecodeErrors = "bpfstatd.drain.decode_errors"
	MetricLinesDropped = "bpfstatd.ship.lines_dropped"
	commTagKey         = "comm"
)

// pipeline aggregates decoded records per flush interval and ships them.
// add is called by the drain goroutine, flush by the flush loop.
type pipeline struct {
	mu   sync.Mutex
	in   *shipper.Interner
	agg  *shipper.Aggregator
	ship *shipper.Shipper
	proc bpf.ProcessRecord

	exec, fork, exit *shipper.Metric
	self             [6]shipper.Key // by selfMetrics

	// packer holds the shipper's cumulative totals that the flush loop
	// reads for the status query.
	packer shipTotals

	// last values of cumulative counters, for deltas
	lastLedger []bpf.Ledger
	lastDrain  ringbuf.DrainStats
	lastFailed uint64
}

// shipTotals are cumulative totals of the shipper.
type shipTotals struct {
	// Dropped counts lines that were not sent: failed, dropped from the
	// queue, too long for a datagram, or rejected by the dialect.
	Dropped uint64
}

var selfMetrics = [...]string{MetricKernelSeen, MetricRingFull, MetricSampledOut, MetricDrainRecords, MetricDecodeErrors, MetricLinesDropped}

var (
	failedFalse = []byte("false")
	failedTrue  = []byte("true")
)

func newPipeline(out io.Writer, cfg Config) (*pipeline, error) {
	in, err := shipper.NewInterner(shipper.InternerOptions{Tags: cfg.Tags})
	if err != nil {
		return nil, err
	}
	p := &pipeline{in: in, agg: shipper.NewAggregator(in, shipper.AggregatorOptions{})}
	register := func(spec shipper.MetricSpec) *shipper.Metric {
		m, rerr := in.Register(spec)
		if err == nil {
			err = rerr
		}
		return m
	}
	p.exec = register(shipper.MetricSpec{Name: MetricExec, TagKeys: []string{commTagKey}})
	p.fork = register(shipper.MetricSpec{Name: MetricFork, TagKeys: []string{commTagKey}})
	p.exit = register(shipper.MetricSpec{Name: MetricExit, TagKeys: []string{commTagKey, "failed"}})
	for i, name := range selfMetrics {
		if m := register(shipper.MetricSpec{Name: name, Priority: shipper.Critical, KeepZero: true}); m != nil {
			p.self[i] = m.Key()
		}
	}
	if err != nil {
		return nil, err
	}
	opts := shipper.Options{MaxPayload: cfg.MaxPayload}
	if c, ok := out.(net.Conn); ok {
		p.ship, err = shipper.NewConn(c, opts) // batched sends and breaker probes
	} else {
		p.ship, err = shipper.NewWriter(out, opts)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// add counts one record, scaled by its sampling rate.
func (p *pipeline) add(r *bpf.Record) {
	if r.Process(&p.proc) != nil {
		return
	}
	p.mu.Lock()
	n, name := int64(p.proc.Rate), p.proc.Name()
	switch p.proc.Kind {
	case bpf.KindExec:
		p.agg.Add(p.exec.Key(name), n)
	case bpf.KindFork:
		p.agg.Add(p.fork.Key(name), n)
	case bpf.KindExit:
		failed := failedFalse
		if p.proc.Failed() {
			failed = failedTrue
		}
		p.agg.Add(p.exit.Key(name, failed), n)
	}
	p.mu.Unlock()
}

// flush ships the interval's counters and bpfstatd's own.
func (p *pipeline) flush(sh *bpf.Shared, drain *ringbuf.Drainer[bpf.Record]) error {
	ledgers, lerr := sh.Ledgers()
	stats := drain.Stats()

	// Pack under the lock the drain goroutine takes; send outside it, so
	// that a slow socket never stalls the drain.
	p.mu.Lock()
	var err error
	if lerr == nil {
		var seen, full, sampled uint64
		for i, l := range ledgers {
			var last bpf.Ledger
			if i < len(p.lastLedger) {
				last = p.lastLedger[i]
			}
			seen += l.Seen - last.Seen
			full += l.RingFull - last.RingFull
			sampled += l.SampledOut - last.SampledOut
		}
		p.agg.Add(p.self[0], int64(seen))
		p.agg.Add(p.self[1], int64(full))
		p.agg.Add(p.self[2], int64(sampled))
		p.lastLedger = ledgers
	} else {
		err = fmt.Errorf("read kernel ledger: %w", lerr)
	}
	p.agg.Add(p.self[3], int64(stats.Records-p.lastDrain.Records))
	p.agg.Add(p.self[4], int64(stats.DecodeErrors-p.lastDrain.DecodeErrors))
	p.lastDrain = stats
	c := p.ship.Stats().Counts
	_, droppedLines := c.Dropped()
	dropped := droppedLines + c[shipper.StatLinesFailed] + c[shipper.StatLinesTooLong] + c[shipper.StatLinesRejected]
	p.agg.Add(p.self[5], int64(dropped-p.packer.Dropped))
	p.packer.Dropped = dropped

	p.ship.Flush(p.agg)
	p.mu.Unlock()
	p.ship.Send(context.Background())
	c = p.ship.Stats().Counts
	if failed := c[shipper.StatDatagramsFailed]; failed != p.lastFailed && err == nil {
		err = fmt.Errorf("write %d datagrams: %w", failed-p.lastFailed, p.ship.Err())
	}
	p.lastFailed = c[shipper.StatDatagramsFailed]
	return err
}

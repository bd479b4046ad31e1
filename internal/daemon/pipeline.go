package daemon

import (
	"fmt"
	"io"
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

// pipeline aggregates decoded records per flush interval and packs them.
// add is called by the drain goroutine, flush by the flush loop.
type pipeline struct {
	mu     sync.Mutex
	comms  *shipper.Interner
	execs  shipper.Counters
	forks  shipper.Counters
	exits  [2]shipper.Counters // by failed
	proc   bpf.ProcessRecord
	packer *shipper.Packer
	tags   []string
	tagBuf []string

	// last values of cumulative counters, for deltas
	lastLedger []bpf.Ledger
	lastDrain  ringbuf.DrainStats
	lastDrops  uint64
}

func newPipeline(out io.Writer, cfg Config) (*pipeline, error) {
	packer, err := shipper.NewPacker(out, cfg.MaxPayload)
	if err != nil {
		return nil, err
	}
	return &pipeline{
		comms:  shipper.NewInterner(commTagKey),
		packer: packer,
		tags:   cfg.Tags,
		tagBuf: make([]string, 0, len(cfg.Tags)+2),
	}, nil
}

// add counts one record, scaled by its sampling rate.
func (p *pipeline) add(r *bpf.Record) {
	if r.Process(&p.proc) != nil {
		return
	}
	p.mu.Lock()
	h := p.comms.Intern(p.proc.Name())
	switch p.proc.Kind {
	case bpf.KindExec:
		p.execs.Add(h, int64(p.proc.Rate))
	case bpf.KindFork:
		p.forks.Add(h, int64(p.proc.Rate))
	case bpf.KindExit:
		failed := 0
		if p.proc.Failed() {
			failed = 1
		}
		p.exits[failed].Add(h, int64(p.proc.Rate))
	}
	p.mu.Unlock()
}

// flush packs the interval's counters and bpfstatd's own, and writes them.
func (p *pipeline) flush(sh *bpf.Shared, drain *ringbuf.Drainer[bpf.Record]) error {
	ledgers, lerr := sh.Ledgers()
	stats := drain.Stats()

	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	keep := func(e error) {
		if err == nil {
			err = e
		}
	}
	counter := func(name string, c *shipper.Counters, extra string) {
		c.Each(func(h shipper.Handle, n int64) {
			tags := append(p.tagBuf[:0], p.comms.Tag(h))
			if extra != "" {
				tags = append(tags, extra)
			}
			keep(p.packer.Counter(name, n, append(tags, p.tags...)...))
		})
	}
	counter(MetricExec, &p.execs, "")
	counter(MetricFork, &p.forks, "")
	counter(MetricExit, &p.exits[0], "failed:false")
	counter(MetricExit, &p.exits[1], "failed:true")

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
		keep(p.packer.Counter(MetricKernelSeen, int64(seen), p.tags...))
		keep(p.packer.Counter(MetricRingFull, int64(full), p.tags...))
		keep(p.packer.Counter(MetricSampledOut, int64(sampled), p.tags...))
		p.lastLedger = ledgers
	} else {
		keep(fmt.Errorf("read kernel ledger: %w", lerr))
	}
	keep(p.packer.Counter(MetricDrainRecords, int64(stats.Records-p.lastDrain.Records), p.tags...))
	keep(p.packer.Counter(MetricDecodeErrors, int64(stats.DecodeErrors-p.lastDrain.DecodeErrors), p.tags...))
	p.lastDrain = stats
	drops := p.packer.Dropped
	keep(p.packer.Counter(MetricLinesDropped, int64(drops-p.lastDrops), p.tags...))
	p.lastDrops = drops
	keep(p.packer.Flush())
	return err
}

package daemon

import (
	"fmt"
	"io"
	"sync"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/ringbuf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// Metric names shipped by the exec collector and about bpfstatd itself.
const (
	MetricExec         = "host.process.exec"
	MetricKernelSeen   = "bpfstatd.kernel.seen"
	MetricRingFull     = "bpfstatd.kernel.ring_full"
	MetricDrainRecords = "bpfstatd.drain.records"
	MetricDecodeErrors = "bpfstatd.drain.decode_errors"
	MetricLinesDropped = "bpfstatd.ship.lines_dropped"
	execCommTagKey     = "comm"
)

// pipeline aggregates decoded records per flush interval and packs them.
// addExec is called by the drain goroutine, flush by the flush loop.
type pipeline struct {
	mu     sync.Mutex
	comms  *shipper.Interner
	execs  shipper.Counters
	packer *shipper.Packer
	tags   []string
	tagBuf []string

	// last values of cumulative counters, for deltas
	lastLedger bpf.Ledger
	lastDrain  ringbuf.DrainStats
	lastDrops  uint64
}

func newPipeline(out io.Writer, cfg Config) (*pipeline, error) {
	packer, err := shipper.NewPacker(out, cfg.MaxPayload)
	if err != nil {
		return nil, err
	}
	return &pipeline{
		comms:  shipper.NewInterner(execCommTagKey),
		packer: packer,
		tags:   cfg.Tags,
		tagBuf: make([]string, 0, len(cfg.Tags)+1),
	}, nil
}

// addExec counts one exec record by its command name.
func (p *pipeline) addExec(r *bpf.ExecRecord) {
	p.mu.Lock()
	p.execs.Add(p.comms.Intern(r.Name()), int64(r.Rate))
	p.mu.Unlock()
}

// flush packs the interval's counters and bpfstatd's own, and writes them.
func (p *pipeline) flush(exec *bpf.Exec, drain *ringbuf.Drainer[bpf.ExecRecord]) error {
	ledger, lerr := exec.Ledger()
	stats := drain.Stats()

	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	keep := func(e error) {
		if err == nil {
			err = e
		}
	}
	p.execs.Each(func(h shipper.Handle, n int64) {
		keep(p.packer.Counter(MetricExec, n, append(append(p.tagBuf[:0], p.comms.Tag(h)), p.tags...)...))
	})
	if lerr == nil {
		keep(p.packer.Counter(MetricKernelSeen, int64(ledger.Seen-p.lastLedger.Seen), p.tags...))
		keep(p.packer.Counter(MetricRingFull, int64(ledger.RingFull-p.lastLedger.RingFull), p.tags...))
		p.lastLedger = ledger
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

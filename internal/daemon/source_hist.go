package daemon

import (
	"errors"
	"os"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// Metrics of the block and runq collectors: distributions of nanoseconds,
// shipped as log2 bucket midpoints with sample rate 1/count.
const (
	MetricBlockLatency = "host.block.latency"
	MetricRunqLatency  = "host.runq.latency"
)

// blockSource ships the block I/O latency histogram of each disk.
type blockSource struct {
	c          *bpf.Block
	latency    *shipper.Metric
	last, curr map[bpf.Dev]bpf.Hist
	names      map[bpf.Dev][]byte
}

func openBlock(sh *bpf.Shared) (source, error) {
	c, err := bpf.LoadBlock(sh)
	if err != nil {
		return nil, err
	}
	return &blockSource{c: c, last: map[bpf.Dev]bpf.Hist{}, curr: map[bpf.Dev]bpf.Hist{}, names: map[bpf.Dev][]byte{}}, nil
}

func (s *blockSource) collector() bpf.Collector { return s.c }
func (s *blockSource) programs() []bpf.Program  { return []bpf.Program{bpf.ProgBlock} }

func (s *blockSource) register(r *registrar) {
	s.latency = r.metric(shipper.MetricSpec{Name: MetricBlockLatency, Kind: shipper.Distribution, TagKeys: []string{"disk"}})
}

func (s *blockSource) record(*bpf.Record, *shipper.Aggregator) {}

func (s *blockSource) read(agg *shipper.Aggregator) error {
	if err := s.c.Read(s.curr); err != nil {
		return err
	}
	for dev, h := range s.curr {
		name, ok := s.names[dev]
		if !ok {
			n, err := bpf.DiskName(dev)
			if errors.Is(err, os.ErrNotExist) {
				delete(s.last, dev)
				if err := s.c.Forget(dev); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				n = dev.String()
			}
			name = []byte(n)
			s.names[dev] = name
		}
		prev := s.last[dev]
		if d := h.Sub(&prev); d.Count() != 0 {
			agg.AddBuckets(s.latency.Key(name), d[:])
		}
		s.last[dev] = h
	}
	return nil
}

// runqSource ships the run-queue latency histogram.
type runqSource struct {
	c       *bpf.Runq
	latency *shipper.Metric
	last    bpf.Hist
}

func openRunq(sh *bpf.Shared) (source, error) {
	c, err := bpf.LoadRunq(sh)
	if err != nil {
		return nil, err
	}
	return &runqSource{c: c}, nil
}

func (s *runqSource) collector() bpf.Collector { return s.c }
func (s *runqSource) programs() []bpf.Program  { return []bpf.Program{bpf.ProgRunq} }

func (s *runqSource) register(r *registrar) {
	s.latency = r.metric(shipper.MetricSpec{Name: MetricRunqLatency, Kind: shipper.Distribution})
}

func (s *runqSource) record(*bpf.Record, *shipper.Aggregator) {}

func (s *runqSource) read(agg *shipper.Aggregator) error {
	h, err := s.c.Read()
	if err != nil {
		return err
	}
	if d := h.Sub(&s.last); d.Count() != 0 {
		agg.AddBuckets(s.latency.Key(), d[:])
	}
	s.last = h
	return nil
}

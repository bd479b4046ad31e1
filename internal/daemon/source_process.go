package daemon

import (
	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// Metrics of the process collector.
const (
	MetricExec = "host.process.exec"
	MetricExit = "host.process.exit"
	MetricFork = "host.process.fork"
)

var (
	failedFalse = []byte("false")
	failedTrue  = []byte("true")
)

// processSource counts execs, exits (by whether the exit code was
// non-zero) and forks by process name.
type processSource struct {
	c                *bpf.Process
	exec, exit, fork *shipper.Metric
	rec              bpf.ProcessRecord
}

func openProcess(sh *bpf.Shared) (source, error) {
	c, err := bpf.LoadProcess(sh)
	if err != nil {
		return nil, err
	}
	return &processSource{c: c}, nil
}

func (s *processSource) collector() bpf.Collector { return s.c }
func (s *processSource) programs() []bpf.Program  { return s.c.Programs() }

func (s *processSource) register(r *registrar) {
	s.exec = r.metric(shipper.MetricSpec{Name: MetricExec, TagKeys: []string{"comm"}})
	s.exit = r.metric(shipper.MetricSpec{Name: MetricExit, TagKeys: []string{"comm", "failed"}})
	s.fork = r.metric(shipper.MetricSpec{Name: MetricFork, TagKeys: []string{"comm"}})
}

func (s *processSource) record(r *bpf.Record, agg *shipper.Aggregator) {
	if r.Process(&s.rec) != nil {
		return
	}
	n, name := int64(s.rec.Rate), s.rec.Name()
	switch s.rec.Kind {
	case bpf.KindExec:
		agg.Add(s.exec.Key(name), n)
	case bpf.KindFork:
		agg.Add(s.fork.Key(name), n)
	case bpf.KindExit:
		failed := failedFalse
		if s.rec.Failed() {
			failed = failedTrue
		}
		agg.Add(s.exit.Key(name, failed), n)
	}
}

func (s *processSource) read(*shipper.Aggregator) error { return nil }

package bpf

import (
	"errors"
	"fmt"
)

// Runq is the run-queue latency collector's kernel side: BTF-typed
// tracepoints on sched_wakeup, sched_wakeup_new and sched_switch that time
// how long each task waits on a run queue, from its wakeup (or from being
// switched out still runnable, when preempted) until it is switched in, in
// one host-wide [Hist] of nanoseconds kept in a per-CPU map.
//
// Metric: host.runq.latency, a distribution (|d) of nanoseconds, no tags
// beyond the global ones: each non-empty bucket of an interval's counts
// ([Hist.Sub] of two reads) ships as its midpoint (shipper.BucketMidpoint)
// with sample rate 1/count.
//
// Its drop ledger ([ProgRunq]) counts seen = emitted + ring_full: a wait
// that could not be timed because the map of waiting tasks (10240 entries)
// was full is counted as ring_full. Waits under way when the programs are
// attached are not measured.
//
// Its methods are called from one goroutine.
type Runq struct {
	objs runqObjects
	tracing
	perCPU []Hist
}

var _ Collector = (*Runq)(nil)

// LoadRunq loads the run-queue latency programs, counting in s's ledger.
func LoadRunq(s *Shared) (*Runq, error) {
	spec, err := loadRunq()
	if err != nil {
		return nil, err
	}
	r := new(Runq)
	if err := s.load("runq", spec, &r.objs); err != nil {
		return nil, err
	}
	return r, nil
}

// Name returns "runq".
func (r *Runq) Name() string { return "runq" }

// Attach starts the programs, forgetting waits noted before a Detach.
func (r *Runq) Attach() error {
	if r.links != nil {
		return nil
	}
	if err := forgetStarts[uint32](r.objs.RunqStart); err != nil {
		return fmt.Errorf("attach runq collector: clear waiting tasks: %w", err)
	}
	return r.attach(r.Name(), r.objs.RunqWakeup, r.objs.RunqWakeupNew, r.objs.RunqSwitch)
}

// Detach stops the programs.
func (r *Runq) Detach() error { return r.detach(r.Name()) }

// Read returns the run-queue latency histogram, in nanoseconds, counted
// since the programs were loaded.
func (r *Runq) Read() (Hist, error) {
	if err := r.objs.RunqHist.Lookup(uint32(0), &r.perCPU); err != nil {
		return Hist{}, fmt.Errorf("read run-queue histogram: %w", err)
	}
	return sumHist(r.perCPU), nil
}

// Close detaches the programs and releases them.
func (r *Runq) Close() error {
	return errors.Join(r.Detach(), r.objs.Close())
}

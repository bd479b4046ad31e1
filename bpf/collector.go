package bpf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Collector is the kernel side of one group of metrics: programs loaded
// into the kernel that start counting when attached. Its methods are called
// from one goroutine; Close may be called more than once.
type Collector interface {
	// Name is the collector's name, as chosen with --collectors.
	Name() string
	// Attach starts counting.
	Attach() error
	// Detach stops counting, and submits to the ring buffer what the
	// programs held back (see [RunFlusher]); what they wrote so far stays
	// readable.
	Detach() error
	// Close detaches and releases everything.
	Close() error
}

// SampleRater is a collector whose ring-buffer programs honour the sampling
// knob.
type SampleRater interface {
	// SetSampleRate makes each CPU keep one event in n; 1 keeps all.
	SetSampleRate(n uint32) error
}

// MissCounter is a collector that can say how often the kernel skipped its
// programs: a tracing program does not run when it would nest inside
// itself on a CPU (the kernel's recursion check), so that event is in no
// ledger slot, not even seen.
type MissCounter interface {
	// Misses returns the events the kernel did not run the collector's
	// programs for, since they were loaded.
	Misses() (uint64, error)
}

// RunFlusher is a collector whose ring-buffer program holds events back,
// each CPU in a run that it submits as one record.
type RunFlusher interface {
	// FlushRuns submits the runs that CPUs hold open to the ring buffer.
	FlushRuns() error
}

// tracing attaches BTF-typed tracepoint programs and detaches them together.
type tracing struct {
	links []link.Link
	progs []*ebpf.Program // every program attached once, for Misses
}

func (t *tracing) attach(name string, progs ...*ebpf.Program) error {
	if t.links != nil {
		return nil
	}
	for _, p := range progs {
		if !slices.Contains(t.progs, p) {
			t.progs = append(t.progs, p)
		}
	}
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			err = fmt.Errorf("attach %s collector: %w", name, err)
			return errors.Join(err, t.detach(name))
		}
		t.links = append(t.links, l)
	}
	return nil
}

// attached returns every program attached once.
func (t *tracing) attached() []*ebpf.Program { return t.progs }

func (t *tracing) detach(name string) error {
	var errs []error
	for _, l := range t.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach %s collector: %w", name, err))
		}
	}
	t.links = nil
	return errors.Join(errs...)
}

// Misses returns the runs of the programs the kernel skipped for
// recursion, summed; counts stay readable after Detach.
func (t *tracing) Misses() (uint64, error) {
	var n uint64
	for _, p := range t.progs {
		st, err := p.Stats()
		if err != nil {
			return 0, fmt.Errorf("read recursion misses: %w", err)
		}
		n += st.RecursionMisses
	}
	return n, nil
}

// setSampleRate writes the sampling knob of a loaded object.
func setSampleRate(name string, v *ebpf.Variable, n uint32) error {
	if n == 0 {
		return fmt.Errorf("set %s sample rate: rate must be at least 1", name)
	}
	if err := v.Set(n); err != nil {
		return fmt.Errorf("set %s sample rate: %w", name, err)
	}
	return nil
}

package bpf

import (
	"errors"
	"fmt"

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
	// Detach stops counting; what the programs wrote so far stays readable.
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

// tracing attaches BTF-typed tracepoint programs and detaches them together.
type tracing struct {
	links []link.Link
}

func (t *tracing) attach(name string, progs ...*ebpf.Program) error {
	if t.links != nil {
		return nil
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

package bpf

import "errors"

// Process is the process collector's kernel side: BTF-typed tracepoints on
// sched_process_exec, sched_process_exit and sched_process_fork that write a
// [ProcessRecord] per exec, per process exit and per new process.
type Process struct {
	objs processObjects
	tracing
}

var (
	_ Collector   = (*Process)(nil)
	_ SampleRater = (*Process)(nil)
)

// LoadProcess loads the process collector's programs, writing to s's maps.
func LoadProcess(s *Shared) (*Process, error) {
	spec, err := loadProcess()
	if err != nil {
		return nil, err
	}
	p := new(Process)
	if err := s.load("process", spec, &p.objs); err != nil {
		return nil, err
	}
	return p, nil
}

// Name returns "process".
func (p *Process) Name() string { return "process" }

// Attach starts the programs.
func (p *Process) Attach() error {
	return p.attach(p.Name(), p.objs.HandleExec, p.objs.HandleExit, p.objs.HandleFork)
}

// Detach stops the programs.
func (p *Process) Detach() error { return p.detach(p.Name()) }

// SetSampleRate makes each CPU record one event in n.
func (p *Process) SetSampleRate(n uint32) error {
	return setSampleRate(p.Name(), p.objs.SampleRate, n)
}

// Close detaches the programs and releases them.
func (p *Process) Close() error {
	return errors.Join(p.Detach(), p.objs.Close())
}

// Programs returns the ledger ids of the collector's programs.
func (p *Process) Programs() []Program { return []Program{ProgExec, ProgExit, ProgFork} }

package bpf

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// RingOptions size a program's BPF ring buffer and set when its submits wake
// the reader. The zero value gives the defaults.
type RingOptions struct {
	// Size of the ring in bytes: a power of two and a multiple of the page
	// size. Zero means 256 KiB.
	Size uint32
	// WakeupBytes is how many queued bytes make a submit wake the reader;
	// below it, records are submitted with BPF_RB_NO_WAKEUP and wait for the
	// reader's timer. Zero means a quarter of Size; 1 wakes on every record.
	WakeupBytes uint64
}

// Defaults for [RingOptions].
const (
	DefaultRingSize = 256 << 10
)

func (o RingOptions) withDefaults() (RingOptions, error) {
	if o.Size == 0 {
		o.Size = DefaultRingSize
	}
	page := uint32(os.Getpagesize())
	if o.Size&(o.Size-1) != 0 || o.Size%page != 0 {
		return o, fmt.Errorf("ring size %d is not a power of two multiple of the page size %d", o.Size, page)
	}
	if o.WakeupBytes == 0 {
		o.WakeupBytes = uint64(o.Size / 4)
	}
	return o, nil
}

// Exec is the exec collector's kernel side: a tp_btf program on
// sched_process_exec that writes an [ExecRecord] per execve to its ring
// buffer. Close releases everything; it is safe to call more than once.
type Exec struct {
	objs execObjects
	link link.Link
}

// LoadExec loads the exec program and its maps into the kernel, without
// attaching it.
func LoadExec(opts RingOptions) (*Exec, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("load exec program: %w", err)
	}
	spec, err := loadExec()
	if err != nil {
		return nil, err
	}
	spec.Maps[execMapEvents].MaxEntries = opts.Size
	if err := spec.Variables[execVarWakeupBytes].Set(opts.WakeupBytes); err != nil {
		return nil, fmt.Errorf("set exec wakeup threshold: %w", err)
	}
	e := new(Exec)
	if err := spec.LoadAndAssign(&e.objs, nil); err != nil {
		return nil, fmt.Errorf("load exec program: %w", verifierDetail(err))
	}
	return e, nil
}

// Attach starts the program: from now on every execve produces a record.
func (e *Exec) Attach() error {
	if e.link != nil {
		return nil
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: e.objs.HandleExec, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return fmt.Errorf("attach exec program to sched_process_exec: %w", err)
	}
	e.link = l
	return nil
}

// Detach stops the program; records already in the ring stay there.
func (e *Exec) Detach() error {
	if e.link == nil {
		return nil
	}
	err := e.link.Close()
	e.link = nil
	if err != nil {
		return fmt.Errorf("detach exec program: %w", err)
	}
	return nil
}

// Events returns the program's ring buffer, for a reader.
func (e *Exec) Events() *ebpf.Map { return e.objs.Events }

// Program returns the loaded program, for its ID and run-time statistics.
func (e *Exec) Program() *ebpf.Program { return e.objs.HandleExec }

// Ledger reads the program's drop ledger, summed over CPUs.
func (e *Exec) Ledger() (Ledger, error) { return readLedger(e.objs.Ledger) }

// Close detaches the program and releases its maps.
func (e *Exec) Close() error {
	return errors.Join(e.Detach(), e.objs.Close())
}

// verifierDetail keeps the tail of a verifier log in the error, where the
// reason for a rejection is.
func verifierDetail(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w\n%+3v", err, ve)
	}
	return err
}

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// OOM is the oom collector's kernel side: a BTF-typed tracepoint on
// mark_victim that writes an [OOMRecord] per task the OOM killer chooses
// ([ProgOOM]), whether the memory ran out in a cgroup or on the host.
//
// OOM kills are rare and each one matters, so the collector is not a
// [SampleRater]: its records are never sampled out.
//
// Its metric, from the records:
//
//	host.oom.kill  counter, tag comm: the victim's name, sanitised
type OOM struct {
	objs oomObjects
	tracing
}

var _ Collector = (*OOM)(nil)

// LoadOOM loads the oom collector's program, writing to s's maps. It
// needs a kernel whose mark_victim tracepoint passes the victim's task
// (Linux 6.9 on; before, it passed only a pid) and fails with an error
// wrapping [ErrKernel] otherwise.
func LoadOOM(s *Shared) (*OOM, error) {
	spec, err := loadOom()
	if err != nil {
		return nil, err
	}
	kernel, err := kernelBTF(s)
	if err != nil {
		return nil, fmt.Errorf("load oom collector: %w", err)
	}
	if n, err := tracepointArgs(kernel, "mark_victim"); err != nil {
		return nil, fmt.Errorf("load oom collector: %w", err)
	} else if n < 2 {
		return nil, fmt.Errorf("load oom collector: the kernel's mark_victim tracepoint does not pass the victim's task: %w", ErrKernel)
	}
	o := new(OOM)
	if err := s.load("oom", spec, &o.objs); err != nil {
		return nil, err
	}
	return o, nil
}

// Name returns "oom".
func (o *OOM) Name() string { return "oom" }

// Attach starts the program.
func (o *OOM) Attach() error { return o.attach(o.Name(), o.objs.HandleOom) }

// Detach stops the program.
func (o *OOM) Detach() error { return o.detach(o.Name()) }

// Close detaches the program and releases it.
func (o *OOM) Close() error {
	return errors.Join(o.Detach(), o.objs.Close())
}

// OOMRecord is a task the OOM killer chose. The kernel kills the victim's
// whole process, and every other process sharing its memory, but marks
// only this task.
type OOMRecord struct {
	Header
	PID  uint32 // the victim's thread id
	TGID uint32 // the victim's process id
	UID  uint32 // the victim's real user id
	// Comm is the victim's name, NUL-padded. Treat it as hostile text.
	Comm [CommLen]byte
}

// Name returns the victim's name up to its first NUL. The slice aliases r.
func (r *OOMRecord) Name() []byte { return cstring(r.Comm[:]) }

// OOM decodes a record of kind [KindOOM] into o.
func (r *Record) OOM(o *OOMRecord) error {
	if r.size != OOMRecordSize || r.Kind != KindOOM {
		return fmt.Errorf("decode oom record of kind %d: %w", r.Kind, ErrRecord)
	}
	b := r.raw[HeaderSize:OOMRecordSize]
	le := binary.LittleEndian
	o.Header = r.Header
	o.PID = le.Uint32(b)
	o.TGID = le.Uint32(b[4:])
	o.UID = le.Uint32(b[8:])
	copy(o.Comm[:], b[16:])
	return nil
}

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind says which record a ring-buffer sample holds. The values mirror enum
// record_kind in include/record.h.
type Kind uint32

// Record kinds.
const (
	KindExec Kind = 1
)

// CommLen is the size of a task's command name in the kernel, with its
// terminating NUL (TASK_COMM_LEN).
const CommLen = 16

// Record sizes in bytes, as laid out by include/record.h.
const (
	HeaderSize     = 16
	ExecRecordSize = HeaderSize + 8 + CommLen
)

// ErrRecord reports a ring-buffer sample that is not a well-formed record.
var ErrRecord = errors.New("malformed record")

// Header is the first part of every ring-buffer record.
type Header struct {
	Kind Kind
	// Rate is the 1-in-Rate sampling that let this record through; 1 means
	// every event was recorded.
	Rate uint32
	// TimeNS is the kernel's monotonic clock (bpf_ktime_get_ns) at the event.
	TimeNS uint64
}

// ExecRecord is one successful execve.
type ExecRecord struct {
	Header
	PID  uint32 // thread id
	TGID uint32 // process id
	// Comm is the new program's name, NUL-padded. It is chosen by whoever
	// runs the program: treat it as hostile text.
	Comm [CommLen]byte
}

// Name returns the command name up to its first NUL. The slice aliases r.
func (r *ExecRecord) Name() []byte {
	for i, c := range r.Comm {
		if c == 0 {
			return r.Comm[:i]
		}
	}
	return r.Comm[:]
}

// DecodeExec decodes an exec record from a raw ring-buffer sample into r,
// without allocating. It returns an error wrapping [ErrRecord] when the
// sample has the wrong size or kind.
func DecodeExec(sample []byte, r *ExecRecord) error {
	if len(sample) != ExecRecordSize {
		return fmt.Errorf("decode exec record of %d bytes, want %d: %w", len(sample), ExecRecordSize, ErrRecord)
	}
	le := binary.LittleEndian
	r.Kind = Kind(le.Uint32(sample[0:]))
	if r.Kind != KindExec {
		return fmt.Errorf("decode exec record of kind %d: %w", r.Kind, ErrRecord)
	}
	r.Rate = le.Uint32(sample[4:])
	r.TimeNS = le.Uint64(sample[8:])
	r.PID = le.Uint32(sample[16:])
	r.TGID = le.Uint32(sample[20:])
	copy(r.Comm[:], sample[24:])
	return nil
}

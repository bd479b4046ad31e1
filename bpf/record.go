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
	KindExec    Kind = 1
	KindExit    Kind = 2
	KindFork    Kind = 3
	KindTCP     Kind = 4
	KindOOM     Kind = 5
	KindSyscall Kind = 6
)

// CommLen is the size of a task's command name in the kernel, with its
// terminating NUL (TASK_COMM_LEN).
const CommLen = 16

// Record sizes in bytes, as laid out by include/record.h.
const (
	HeaderSize        = 16
	ProcessRecordSize = HeaderSize + 16 + CommLen
	TCPRecordSize     = HeaderSize + 56 + CommLen
	OOMRecordSize     = HeaderSize + 16 + CommLen
	// MaxRecordSize bounds every record kind.
	MaxRecordSize = 128
)

// recordSizes gives each kind's size; a kind without one is unknown.
var recordSizes = [...]uint8{
	KindExec: ProcessRecordSize,
	KindExit: ProcessRecordSize,
	KindFork: ProcessRecordSize,
	KindTCP:  TCPRecordSize,
	KindOOM:  OOMRecordSize,

	KindSyscall: SyscallRecordSize,
}

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

// Record is any ring-buffer record, copied out of the ring: its header,
// decoded, and its bytes, for the decoder of its kind.
type Record struct {
	Header
	size uint8
	raw  [MaxRecordSize]byte
}

// Bytes returns the whole record. The slice aliases r.
func (r *Record) Bytes() []byte { return r.raw[:r.size] }

// DecodeRecord checks that sample is a record of a known kind and size and
// copies it into r, without allocating. It returns an error wrapping
// [ErrRecord] otherwise.
func DecodeRecord(sample []byte, r *Record) error {
	if len(sample) < HeaderSize {
		return fmt.Errorf("decode record of %d bytes: %w", len(sample), ErrRecord)
	}
	le := binary.LittleEndian
	kind := Kind(le.Uint32(sample))
	if int(kind) >= len(recordSizes) || recordSizes[kind] == 0 {
		return fmt.Errorf("decode record of unknown kind %d: %w", kind, ErrRecord)
	}
	if want := int(recordSizes[kind]); len(sample) != want {
		return fmt.Errorf("decode record of kind %d with %d bytes, want %d: %w", kind, len(sample), want, ErrRecord)
	}
	r.Kind = kind
	r.Rate = max(le.Uint32(sample[4:]), 1)
	r.TimeNS = le.Uint64(sample[8:])
	r.size = uint8(copy(r.raw[:], sample))
	return nil
}

// ProcessRecord is an exec, an exit or a fork.
type ProcessRecord struct {
	Header
	PID  uint32 // thread id (the child's, for a fork)
	TGID uint32 // process id (the child's, for a fork)
	// Other is the previous pid for an exec (it differs when a thread
	// other than the leader called execve), the parent's process id for a
	// fork, and 0 for an exit.
	Other uint32
	// Code is the exit code for an exit, in wait(2)'s encoding: the exit
	// status in bits 8-15, or the signal that killed it in bits 0-6.
	Code int32
	// Comm is the program's name, NUL-padded. It is chosen by whoever runs
	// the program: treat it as hostile text.
	Comm [CommLen]byte
}

// Name returns the command name up to its first NUL. The slice aliases r.
func (r *ProcessRecord) Name() []byte { return cstring(r.Comm[:]) }

// Failed reports whether an exit record has a non-zero exit code.
func (r *ProcessRecord) Failed() bool { return r.Code != 0 }

// Process decodes a record of kind exec, exit or fork into p.
func (r *Record) Process(p *ProcessRecord) error {
	if r.size != ProcessRecordSize || (r.Kind != KindExec && r.Kind != KindExit && r.Kind != KindFork) {
		return fmt.Errorf("decode process record of kind %d: %w", r.Kind, ErrRecord)
	}
	b := r.raw[HeaderSize:]
	le := binary.LittleEndian
	p.Header = r.Header
	p.PID = le.Uint32(b)
	p.TGID = le.Uint32(b[4:])
	p.Other = le.Uint32(b[8:])
	p.Code = int32(le.Uint32(b[12:]))
	copy(p.Comm[:], b[16:])
	return nil
}

func cstring(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

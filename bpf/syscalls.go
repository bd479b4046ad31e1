package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strconv"

	"github.com/cilium/ebpf"
)

// Syscalls is the syscalls collector's kernel side: two programs on the raw
// sys_enter tracepoint (BTF-typed), for every syscall on the host.
//
// The counting program ([ProgSyscalls]) adds one to a per-CPU counter per
// syscall number; [Syscalls.ReadCounts] sums them once per interval. The
// daemon ships the interval's increase as
//
//	host.syscalls  counter  tag syscall:<name>  (name from [SyscallName])
//
// The by-process program ([ProgSyscallProc]) is attached only after
// [Syscalls.SetByProcess](true). It writes a [SyscallRecord] per syscall to
// the shared ring buffer, honours the sampling knob and keeps the drop
// ledger; the daemon counts the records as
//
//	host.syscalls.by_process  counter  tag comm:<name>  (sampled as |@rate)
//
// The counters are not in the drop ledger: their sum over all numbers is
// what the counting program saw. A 32-bit (compat) process's syscalls are
// counted under their 32-bit numbers, which the names of the native table
// do not describe.
//
// Its methods are called from one goroutine, except ReadCounts and
// SetSampleRate, which may be called from any goroutine (one at a time for
// ReadCounts).
type Syscalls struct {
	objs      syscallsObjects
	counts    tracing
	byProcess tracing
	recording bool // SetByProcess(true)
	attached  bool
	keys      []uint32
	perCPU    []uint64
}

var (
	_ Collector   = (*Syscalls)(nil)
	_ SampleRater = (*Syscalls)(nil)
	_ MissCounter = (*Syscalls)(nil)
)

// MaxSyscallNr bounds the syscall numbers counted one by one: a number at
// or above it is counted in [SyscallCounts.OutOfRange]. It mirrors
// SYSCALL_NR_MAX in include/record_syscalls.h.
const MaxSyscallNr = 512

// SyscallRecordSize is the size in bytes of a [KindSyscall] record, as laid
// out by include/record_syscalls.h.
const SyscallRecordSize = HeaderSize + 16 + CommLen

// LoadSyscalls loads the syscalls collector's programs, writing to s's maps.
func LoadSyscalls(s *Shared) (*Syscalls, error) {
	return loadSyscallsCollector(s, false)
}

// loadSyscallsCollector loads the programs; with defaultWakeup, the by-process
// program wakes the reader on every record (for the overhead benchmark).
func loadSyscallsCollector(s *Shared, defaultWakeup bool) (*Syscalls, error) {
	spec, err := loadSyscalls()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["default_wakeup"].Set(defaultWakeup); err != nil {
		return nil, fmt.Errorf("load syscalls collector: set wakeup mode: %w", err)
	}
	c := new(Syscalls)
	if err := s.load("syscalls", spec, &c.objs); err != nil {
		return nil, err
	}
	return c, nil
}

// Name returns "syscalls".
func (c *Syscalls) Name() string { return "syscalls" }

// Attach starts counting, and recording by process if that is enabled.
func (c *Syscalls) Attach() error {
	if err := c.counts.attach(c.Name(), c.objs.CountSyscall); err != nil {
		return err
	}
	if c.recording {
		if err := c.byProcess.attach(c.Name(), c.objs.RecordSyscall); err != nil {
			return errors.Join(err, c.counts.detach(c.Name()))
		}
	}
	c.attached = true
	return nil
}

// Detach stops both programs.
func (c *Syscalls) Detach() error {
	c.attached = false
	return errors.Join(c.byProcess.detach(c.Name()), c.counts.detach(c.Name()))
}

// SetByProcess turns the by-process program on or off: at once while the
// collector is attached, otherwise at the next Attach. It is off after
// loading: at millions of syscalls a second, it is the busiest writer of
// the ring buffer.
func (c *Syscalls) SetByProcess(on bool) error {
	c.recording = on
	switch {
	case !c.attached:
		return nil
	case on:
		return c.byProcess.attach(c.Name(), c.objs.RecordSyscall)
	default:
		return c.byProcess.detach(c.Name())
	}
}

// Misses returns the syscalls the kernel did not run the programs for.
func (c *Syscalls) Misses() (uint64, error) {
	a, err := c.counts.Misses()
	if err != nil {
		return 0, err
	}
	b, err := c.byProcess.Misses()
	return a + b, err
}

// SetSampleRate makes each CPU record one syscall in n by process.
func (c *Syscalls) SetSampleRate(n uint32) error {
	return setSampleRate(c.Name(), c.objs.SampleRate, n)
}

// Close detaches the programs and releases them.
func (c *Syscalls) Close() error {
	return errors.Join(c.Detach(), c.objs.Close())
}

// SyscallCounts holds the syscalls entered since the collector was loaded,
// summed over CPUs. The counts only grow: subtract the previous read for an
// interval's increase.
type SyscallCounts struct {
	// ByNr counts each syscall number below [MaxSyscallNr].
	ByNr [MaxSyscallNr]uint64
	// OutOfRange counts syscalls with any other number: invalid ones, and
	// x32 syscalls on x86_64.
	OutOfRange uint64
}

// Total returns the syscalls counted under any number.
func (s *SyscallCounts) Total() uint64 {
	n := s.OutOfRange
	for _, v := range s.ByNr {
		n += v
	}
	return n
}

// ReadCounts reads the counters into into, in one system call.
func (c *Syscalls) ReadCounts(into *SyscallCounts) error {
	const slots = MaxSyscallNr + 1
	if c.keys == nil {
		cpus, err := ebpf.PossibleCPU()
		if err != nil {
			return fmt.Errorf("read syscall counts: %w", err)
		}
		c.keys = make([]uint32, slots)
		c.perCPU = make([]uint64, slots*cpus)
	}
	var cursor ebpf.MapBatchCursor
	n, err := c.objs.SyscallCounts.BatchLookup(&cursor, c.keys, c.perCPU, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read syscall counts: %w", err)
	}
	if n != slots {
		return fmt.Errorf("read syscall counts: got %d of %d slots", n, slots)
	}
	*into = SyscallCounts{}
	cpus := len(c.perCPU) / slots
	for i, key := range c.keys {
		var sum uint64
		for _, v := range c.perCPU[i*cpus : (i+1)*cpus] {
			sum += v
		}
		if key < MaxSyscallNr {
			into.ByNr[key] = sum
		} else {
			into.OutOfRange += sum
		}
	}
	return nil
}

// SyscallName returns the kernel's name for syscall number nr on this
// machine's architecture (x86_64 and arm64 have tables), such as "read";
// for a number without a name it returns "sys_" and the number.
func SyscallName(nr uint32) string {
	if names := syscallNames(runtime.GOARCH); int64(nr) < int64(len(names)) && names[nr] != "" {
		return names[nr]
	}
	return "sys_" + strconv.FormatUint(uint64(nr), 10)
}

// syscallNames returns the syscall table of a GOARCH, or nil.
func syscallNames(goarch string) []string {
	switch goarch {
	case "amd64":
		return syscallNamesAMD64[:]
	case "arm64":
		return syscallNamesARM64[:]
	}
	return nil
}

// SyscallRecord is one syscall entered, with the task that entered it.
// To keep the program cheap, the kernel reads the clock for one record in
// 64 of each CPU only: Header.TimeNS is 0 on the others.
type SyscallRecord struct {
	Header
	Nr   uint32 // syscall number (see [SyscallName])
	PID  uint32 // thread id
	TGID uint32 // process id
	// Comm is the calling thread's name, NUL-padded. It is chosen by the
	// process (prctl PR_SET_NAME): treat it as hostile text.
	Comm [CommLen]byte
}

// Name returns the thread name up to its first NUL. The slice aliases r.
func (r *SyscallRecord) Name() []byte { return cstring(r.Comm[:]) }

// Syscall decodes a record of kind syscall into s.
func (r *Record) Syscall(s *SyscallRecord) error {
	if r.size != SyscallRecordSize || r.Kind != KindSyscall {
		return fmt.Errorf("decode syscall record of kind %d: %w", r.Kind, ErrRecord)
	}
	b := r.raw[HeaderSize:]
	le := binary.LittleEndian
	s.Header = r.Header
	s.Nr = le.Uint32(b)
	s.PID = le.Uint32(b[4:])
	s.TGID = le.Uint32(b[8:])
	copy(s.Comm[:], b[16:])
	return nil
}

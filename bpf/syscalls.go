package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strconv"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
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
// [Syscalls.SetByProcess](true). It writes [SyscallRecord]s to the shared
// ring buffer, one per run of identical syscalls on a CPU (same number,
// thread and name: a thread calling read in a loop makes one record per
// few ms, not millions), honours the sampling knob and keeps the drop
// ledger; the daemon counts the records' syscalls as
//
//	host.syscalls.by_process  counter  tag comm:<name>  (sampled as |@rate)
//
// A CPU submits its open run when a different syscall comes or the jiffy
// changes; [Syscalls.FlushRuns] submits the runs of CPUs gone quiet, and
// Detach flushes them all, so that nothing is left in the kernel.
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
	cpus      int // possible CPUs
	keys      []uint32
	perCPU    []uint64
}

var (
	_ Collector   = (*Syscalls)(nil)
	_ SampleRater = (*Syscalls)(nil)
	_ MissCounter = (*Syscalls)(nil)
	_ RunFlusher  = (*Syscalls)(nil)
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
	return loadSyscallsCollector(s, recordRuns)
}

// recordMode is how the by-process program writes records; it mirrors
// enum record_mode in syscalls.c. Only the overhead benchmark asks for
// anything but runs.
type recordMode uint32

const (
	recordRuns  recordMode = iota // a record per run of identical syscalls
	recordEach                    // a record per syscall
	recordNaive                   // a record per syscall, each with the default wakeup
)

// loadSyscallsCollector loads the programs with the by-process program
// writing records as mode says.
func loadSyscallsCollector(s *Shared, mode recordMode) (*Syscalls, error) {
	spec, err := loadSyscalls()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables["record_mode"].Set(uint32(mode)); err != nil {
		return nil, fmt.Errorf("load syscalls collector: set record mode: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("load syscalls collector: %w", err)
	}
	c := &Syscalls{cpus: cpus}
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

// Detach stops both programs and submits every CPU's open run.
func (c *Syscalls) Detach() error {
	c.attached = false
	err := errors.Join(c.byProcess.detach(c.Name()), c.counts.detach(c.Name()))
	return errors.Join(err, c.FlushRuns())
}

// FlushRuns submits the by-process runs that CPUs hold open to the ring
// buffer. A CPU submits its run when it enters a different syscall or a
// jiffy passes, so only a CPU gone quiet holds one for long: call
// FlushRuns once per interval. A run that the program is changing at that
// very moment stays open, to go with that CPU's next record or flush.
func (c *Syscalls) FlushRuns() error {
	for cpu := range c.cpus {
		_, err := c.objs.FlushSyscallRun.Run(&ebpf.RunOptions{CPU: uint32(cpu), Flags: unix.BPF_F_TEST_RUN_ON_CPU})
		if err != nil && !errors.Is(err, unix.ENXIO) { // ENXIO: the CPU is offline
			return fmt.Errorf("flush syscall runs on cpu %d: %w", cpu, err)
		}
	}
	return nil
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
		c.keys = make([]uint32, slots)
		c.perCPU = make([]uint64, slots*c.cpus)
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

// SyscallRecord is a run of syscalls entered in a row on one CPU, all
// with the same number, by the same thread under the same name. To keep
// the program cheap, the kernel reads the clock only for a run that opened
// in a new jiffy, and for one run in 64 syscalls otherwise: Header.TimeNS
// is the run's first syscall's time, or 0.
type SyscallRecord struct {
	Header
	Nr   uint32 // syscall number (see [SyscallName])
	PID  uint32 // thread id
	TGID uint32 // process id
	// Count is the syscalls in the run, each standing for Header.Rate.
	Count uint32
	// Comm is the calling thread's name, NUL-padded. It is chosen by the
	// process (prctl PR_SET_NAME): treat it as hostile text.
	Comm [CommLen]byte
}

// Events returns the syscalls the record stands for: Count times Rate.
func (r *SyscallRecord) Events() uint64 { return uint64(r.Count) * uint64(r.Rate) }

// Name returns the thread name up to its first NUL. The slice aliases r.
func (r *SyscallRecord) Name() []byte { return cstring(r.Comm[:]) }

// Syscall decodes a record of kind syscall into s. A run of no syscalls
// is malformed.
func (r *Record) Syscall(s *SyscallRecord) error {
	if r.size != SyscallRecordSize || r.Kind != KindSyscall {
		return fmt.Errorf("decode syscall record of kind %d: %w", r.Kind, ErrRecord)
	}
	b := r.raw[HeaderSize:]
	le := binary.LittleEndian
	if le.Uint32(b[12:]) == 0 {
		return fmt.Errorf("decode syscall record: a run of 0 syscalls: %w", ErrRecord)
	}
	s.Header = r.Header
	s.Nr = le.Uint32(b)
	s.PID = le.Uint32(b[4:])
	s.TGID = le.Uint32(b[8:])
	s.Count = le.Uint32(b[12:])
	copy(s.Comm[:], b[16:])
	return nil
}

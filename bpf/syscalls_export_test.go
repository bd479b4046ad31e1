package bpf

import "github.com/cilium/ebpf"

// LoadSyscallsEach loads the syscalls collector with a by-process program
// that writes a record per syscall, with the daemon's wakeup policy.
func LoadSyscallsEach(s *Shared) (*Syscalls, error) {
	return loadSyscallsCollector(s, recordEach)
}

// LoadSyscallsNaive loads the syscalls collector with a by-process program
// that writes a record per syscall, each with the kernel's default wakeup:
// the naive baseline of the overhead benchmark.
func LoadSyscallsNaive(s *Shared) (*Syscalls, error) {
	return loadSyscallsCollector(s, recordNaive)
}

// Programs returns the counting and the by-process programs, for their
// run-time statistics.
func (c *Syscalls) Programs() (counts, byProcess *ebpf.Program) {
	return c.objs.CountSyscall, c.objs.RecordSyscall
}

// SyscallNames returns the syscall table of a GOARCH, or nil.
func SyscallNames(goarch string) []string { return syscallNames(goarch) }

// Tracing attaches programs as the collectors do, for tests of Misses.
type Tracing struct{ tracing }

// Attach attaches progs.
func (t *Tracing) Attach(progs ...*ebpf.Program) error { return t.attach("test", progs...) }

// Detach detaches them.
func (t *Tracing) Detach() error { return t.detach("test") }

package bpf

import "github.com/cilium/ebpf"

// AttachedPrograms returns the tracing programs collector c has attached
// (any but the syscalls collector's), for their run-time statistics.
func AttachedPrograms(c Collector) []*ebpf.Program {
	if t, ok := c.(interface{ attached() []*ebpf.Program }); ok {
		return t.attached()
	}
	return nil
}

// UseDefaultWakeup makes the collectors loaded after it submit their
// records with flags 0, the kernel's default wakeup, instead of the
// wakeup policy of [RingOptions].
func (s *Shared) UseDefaultWakeup() { s.defaultWakeup = true }

// WakeupLimit returns the map of each CPU's last forced wakeup that s hands
// to every collector.
func (s *Shared) WakeupLimit() *ebpf.Map { return s.wakeupJiffy }

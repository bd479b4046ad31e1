package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// commCounter is the kernel's own count of the syscalls made by threads
// named comm: one perf counter per CPU on the raw_syscalls:sys_enter
// tracepoint, filtered on the task's name. It is the truth the daemon's
// host.syscalls.by_process{comm} should add up to, the Go runtime's
// syscalls on the generator's thread included, which the generator's own
// count misses.
//
// Its methods may be called from one goroutine at a time.
type commCounter struct {
	fds []int
}

// newCommCounter starts counting; it needs root (CAP_PERFMON) and tracefs.
func newCommCounter(comm string) (*commCounter, error) {
	id, err := tracepointID("raw_syscalls", "sys_enter")
	if err != nil {
		return nil, err
	}
	cpus, err := onlineCPUs()
	if err != nil {
		return nil, err
	}
	// Opened disabled, and enabled once filtered: an enabled counter
	// counts every task's syscalls until its filter is set, its own
	// ioctl's and those of whatever else runs on the CPU meanwhile.
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: id, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Bits: unix.PerfBitDisabled}
	filter := append([]byte(`comm == "`+comm+`"`), 0)
	c := &commCounter{}
	for _, cpu := range cpus {
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("open sys_enter counter on cpu %d: %w", cpu, err)
		}
		c.fds = append(c.fds, fd)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.PERF_EVENT_IOC_SET_FILTER, uintptr(unsafe.Pointer(&filter[0]))); errno != 0 {
			c.close()
			return nil, fmt.Errorf("filter sys_enter counter on %s: %w", comm, errno)
		}
	}
	for _, fd := range c.fds {
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.PERF_EVENT_IOC_ENABLE, 0); errno != 0 {
			c.close()
			return nil, fmt.Errorf("enable sys_enter counter on %s: %w", comm, errno)
		}
	}
	return c, nil
}

// count returns the syscalls counted so far, every CPU's.
func (c *commCounter) count() (uint64, error) {
	var sum uint64
	var buf [8]byte
	for _, fd := range c.fds {
		if _, err := unix.Read(fd, buf[:]); err != nil {
			return 0, fmt.Errorf("read sys_enter counter: %w", err)
		}
		sum += binary.NativeEndian.Uint64(buf[:])
	}
	return sum, nil
}

func (c *commCounter) close() {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = nil
}

func tracepointID(group, name string) (uint64, error) {
	var errs []error
	for _, root := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		b, err := os.ReadFile(root + "/events/" + group + "/" + name + "/id")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	return 0, fmt.Errorf("find tracepoint %s:%s: %w", group, name, errors.Join(errs...))
}

// onlineCPUs parses /sys/devices/system/cpu/online ("0-3,5").
func onlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, err
	}
	return parseCPUList(strings.TrimSpace(string(b)))
}

func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("parse cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("parse cpu list %q: %w", s, err)
			}
		}
		for cpu := a; cpu <= b; cpu++ {
			cpus = append(cpus, cpu)
		}
	}
	return cpus, nil
}

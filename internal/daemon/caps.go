package daemon

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/bpf"
)

// Capabilities kept after start-up. Every bpf(2) call, even reading a map
// through a descriptor the daemon already holds, needs CAP_BPF while the
// kernel.unprivileged_bpf_disabled sysctl is set (the default), and
// attaching programs to network links that appear later needs
// CAP_NET_ADMIN. Loading and attaching at start needs more; see the README.
var runtimeCaps = []uintptr{unix.CAP_BPF, unix.CAP_NET_ADMIN}

// errCapsCgo reports a binary built with cgo, where Go cannot change the
// capabilities of every thread at once.
var errCapsCgo = errors.New("capabilities can only be dropped by a binary built with CGO_ENABLED=0")

// dropCapabilities reduces the capabilities of every thread of the process
// to those of keep that it holds: it drops the rest from the bounding set
// (when it may: that needs CAP_SETPCAP, which a container that dropped ALL
// lacks, and whose bounding set is then small already), clears the ambient
// and inheritable sets, and sets the permitted and effective sets.
func dropCapabilities(keep []uintptr) error {
	var mask uint64
	for _, c := range keep {
		mask |= 1 << c
	}
	_, held, err := bpf.Capabilities() // every thread of the daemon has the same
	if err != nil {
		return err
	}
	mask &= held
	if held&(1<<unix.CAP_SETPCAP) != 0 {
		if err := dropBounding(mask); err != nil {
			return err
		}
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// Heap objects do not move; KeepAlive holds them across the call.
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := &[2]unix.CapUserData{
		{Effective: uint32(mask), Permitted: uint32(mask)},
		{Effective: uint32(mask >> 32), Permitted: uint32(mask >> 32)},
	}
	err = allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(data)), 0)
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(data)
	if err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	return nil
}

// dropBounding drops every capability outside mask from the bounding set.
func dropBounding(mask uint64) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := uintptr(0); c <= last; c++ {
		if mask&(1<<c) != 0 {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// allThreads runs a system call on every thread of the process.
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	switch errno {
	case 0:
		return nil
	case syscall.ENOTSUP:
		return errCapsCgo
	}
	return errno
}

// lastCap reads the highest capability number the kernel knows.
func lastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read last capability: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 6)
	if err != nil {
		return 0, fmt.Errorf("read last capability: %w", err)
	}
	return uintptr(n), nil
}

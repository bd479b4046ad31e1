package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// KernelBTFPath is where Linux exposes its own BTF.
const KernelBTFPath = "/sys/kernel/btf/vmlinux"

// Errors returned by [CheckSupport]; each is wrapped in a sentence that says
// what is missing.
var (
	ErrPrivilege = errors.New("missing privilege")
	ErrNoBTF     = errors.New("kernel BTF not available")
	ErrKernel    = errors.New("kernel feature not supported")
)

// Capabilities that loading and attaching the programs needs, when not root.
const (
	capPerfmon = 38
	capBPF     = 39
)

// CheckSupport reports whether this process can load bpfstatd's programs on
// this kernel: the capabilities, the kernel BTF at btfPath (normally
// [KernelBTFPath]), and the BPF ring buffer. (BTF-typed tracepoints came
// with the ring buffer, in Linux 5.8; a probe for them would parse the
// kernel's BTF a second time, so loading the programs is their test.) The
// error is one sentence for an operator, wrapping [ErrPrivilege], [ErrNoBTF]
// or [ErrKernel].
func CheckSupport(btfPath string) error {
	if err := checkCapabilities(); err != nil {
		return err
	}
	if _, err := os.Stat(btfPath); err != nil {
		return fmt.Errorf("kernel BTF is missing (%s: %w): bpfstatd needs a kernel built with CONFIG_DEBUG_INFO_BTF=y: %w",
			btfPath, errors.Unwrap(err), ErrNoBTF)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return fmt.Errorf("the kernel has no BPF ring buffer (%w): bpfstatd needs Linux 5.8 or later: %w", err, ErrKernel)
	}
	return nil
}

// CheckNetAdmin fails, in one sentence wrapping [ErrPrivilege], unless the
// process may attach programs to network links, as the net collector does:
// that needs CAP_NET_ADMIN.
func CheckNetAdmin() error {
	eff, _, err := Capabilities()
	if err != nil {
		return err
	}
	if eff&(1<<unix.CAP_NET_ADMIN) == 0 {
		return fmt.Errorf("bpfstatd lacks CAP_NET_ADMIN: the net collector needs it to attach to network links (add it, or leave net out of --collectors): %w", ErrPrivilege)
	}
	return nil
}

// Capabilities returns the calling thread's effective and permitted
// capability sets, bit n for capability n.
func Capabilities() (effective, permitted uint64, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, 0, fmt.Errorf("read process capabilities: %w", err)
	}
	effective = uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
	permitted = uint64(data[1].Permitted)<<32 | uint64(data[0].Permitted)
	return effective, permitted, nil
}

// checkCapabilities fails unless the effective set holds CAP_SYS_ADMIN, or
// both CAP_BPF and CAP_PERFMON. The error names the ones that are missing.
func checkCapabilities() error {
	eff, _, err := Capabilities()
	if err != nil {
		return err
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	if has(unix.CAP_SYS_ADMIN) {
		return nil
	}
	var missing []string
	if !has(capBPF) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(capPerfmon) {
		missing = append(missing, "CAP_PERFMON")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("bpfstatd lacks %s: it must run as root, or with the capabilities CAP_BPF and CAP_PERFMON, to load eBPF programs: %w",
		strings.Join(missing, " and "), ErrPrivilege)
}

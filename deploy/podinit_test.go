package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// podInitEnv, when set, makes the test binary the init of a pod: it
// holds the podSpec as JSON.
const podInitEnv = "BPFSTATD_TEST_POD_INIT"

// podSpec is what a container runtime would be told to run.
type podSpec struct {
	Root         string     // the unpacked image
	Argv         []string   // argv[0] is looked up in the PATH of Env
	Env          []string   // exactly the process's environment
	Caps         []string   // e.g. CAP_BPF: the bounding, permitted and effective sets
	Privileged   bool       // writable /sys, as runc gives a privileged container
	NoNewPrivs   bool       // allowPrivilegeEscalation: false
	ReadOnlyRoot bool       // readOnlyRootFilesystem: true
	Mounts       []podMount // the volumes, in order
	// Join, when set, is /proc/PID/root of a running pod: the process runs
	// in that root instead of setting up its own, as kubectl exec does.
	Join string
}

// podMount is a volume: a host directory bound into the pod.
type podMount struct {
	Source, Target string
	ReadOnly       bool
}

// podInit turns this process into the pod's process and does not return.
// It runs in new mount and PID namespaces (unless joining a pod), as PID 1,
// like runc's init.
func podInit(spec string) {
	var s podSpec
	err := json.Unmarshal([]byte(spec), &s)
	if err == nil {
		err = s.enter()
	}
	fmt.Fprintf(os.Stderr, "pod init: %v\n", err)
	os.Exit(125)
}

// enter sets up the pod's root, confines this thread, and executes the
// pod's command. It returns only on failure.
func (s podSpec) enter() error {
	// Capabilities are per thread: drop them on the one that executes.
	runtime.LockOSThread()
	last, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return err
	}
	lastCap, err := strconv.Atoi(strings.TrimSpace(string(last)))
	if err != nil {
		return err
	}
	root := s.Join
	if root == "" {
		if err := s.mount(); err != nil {
			return err
		}
		root = s.Root
	}
	if err := unix.Chroot(root); err != nil {
		return fmt.Errorf("chroot %s: %w", root, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := limitCaps(s.Caps, lastCap); err != nil {
		return err
	}
	if s.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	path, err := lookPath(s.Argv[0], s.Env)
	if err != nil {
		return err
	}
	return syscall.Exec(path, s.Argv, s.Env)
}

// mount gives the pod what runc gives a container: its root bound and
// then made read-only, a new /proc, a read-only sysfs, a /dev holding the
// usual devices, and its volumes. Everything happens in this process's
// private mount namespace and goes away with it.
func (s podSpec) mount() error {
	r := s.Root
	steps := []struct {
		what                   string
		src, dst, fstype, data string
		flags                  uintptr
	}{
		{"make mounts private", "", "/", "", "", unix.MS_REC | unix.MS_PRIVATE},
		{"bind the root", r, r, "", "", unix.MS_BIND | unix.MS_REC},
		{"mount /proc", "proc", r + "/proc", "proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"mount /sys", "sysfs", r + "/sys", "sysfs", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY},
		{"mount /dev", "tmpfs", r + "/dev", "tmpfs", "mode=755,size=65536k", unix.MS_NOSUID | unix.MS_STRICTATIME},
	}
	if s.Privileged {
		steps[3].flags &^= unix.MS_RDONLY
	}
	for _, st := range steps {
		if err := unix.Mount(st.src, st.dst, st.fstype, st.flags, st.data); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
	}
	for _, dev := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := bindFile("/dev/"+dev, r+"/dev/"+dev); err != nil {
			return err
		}
	}
	for _, m := range s.Mounts {
		dst := filepath.Join(r, m.Target)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("create mount point %s: %w", m.Target, err)
		}
		if err := unix.Mount(m.Source, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s to %s: %w", m.Source, m.Target, err)
		}
		if m.ReadOnly {
			if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("make %s read-only: %w", m.Target, err)
			}
		}
	}
	if s.ReadOnlyRoot {
		if err := unix.Mount("", r, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make the root read-only: %w", err)
		}
	}
	return nil
}

func bindFile(src, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o666)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}

// limitCaps leaves this thread only caps: in its bounding, permitted and
// effective sets, none inheritable or ambient. As uid 0 after execve, the
// new program then has exactly caps, as in a container.
func limitCaps(caps []string, lastCap int) error {
	mask, err := capMask(caps)
	if err != nil {
		return err
	}
	for c := 0; c <= lastCap; c++ {
		if mask&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(mask), Permitted: uint32(mask)},
		{Effective: uint32(mask >> 32), Permitted: uint32(mask >> 32)},
	}
	if err := unix.Capset(&hdr, (*unix.CapUserData)(unsafe.Pointer(&data[0]))); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	return nil
}

// lookPath finds name in the PATH of env, as a runtime resolves a
// container's command.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(getEnv(env, "PATH")) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in the pod's PATH", name)
}

// capNumbers maps each capability's name to its number.
var capNumbers = map[string]int{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH, "CAP_FOWNER": unix.CAP_FOWNER,
	"CAP_FSETID": unix.CAP_FSETID, "CAP_KILL": unix.CAP_KILL, "CAP_SETGID": unix.CAP_SETGID,
	"CAP_SETUID": unix.CAP_SETUID, "CAP_SETPCAP": unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST": unix.CAP_NET_BROADCAST, "CAP_NET_ADMIN": unix.CAP_NET_ADMIN,
	"CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK, "CAP_IPC_OWNER": unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE": unix.CAP_SYS_MODULE, "CAP_SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT": unix.CAP_SYS_PACCT, "CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN, "CAP_SYS_BOOT": unix.CAP_SYS_BOOT,
	"CAP_SYS_NICE": unix.CAP_SYS_NICE, "CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_SYS_TIME": unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG, "CAP_MKNOD": unix.CAP_MKNOD, "CAP_LEASE": unix.CAP_LEASE,
	"CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE, "CAP_AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL,
	"CAP_SETFCAP": unix.CAP_SETFCAP, "CAP_MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN": unix.CAP_MAC_ADMIN, "CAP_SYSLOG": unix.CAP_SYSLOG, "CAP_WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "CAP_AUDIT_READ": unix.CAP_AUDIT_READ,
	"CAP_PERFMON": unix.CAP_PERFMON, "CAP_BPF": unix.CAP_BPF, "CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

func capMask(caps []string) (uint64, error) {
	var mask uint64
	for _, c := range caps {
		n, ok := capNumbers[c]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", c)
		}
		mask |= 1 << n
	}
	return mask, nil
}

func capNames(mask uint64) string {
	var names []string
	for name, n := range capNumbers {
		if mask&(1<<n) != 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

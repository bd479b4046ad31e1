package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

// binary is the daemon built by TestMain, in a directory anyone can read.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bpfstatd-bin-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "bpfstatd")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as released: see make build
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build bpfstatd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// asNobody runs the daemon as an unprivileged user and returns its exit
// code and standard error.
func asNobody(t *testing.T, args ...string) (int, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("run %v as nobody: %v (want a non-zero exit)", args, err)
	}
	return exit.ExitCode(), stderr.String()
}

// TestWithoutPrivilege says in one sentence what is missing, exit 1.
func TestWithoutPrivilege(t *testing.T) {
	code, stderr := asNobody(t)
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "root") || !strings.Contains(stderr, "CAP_BPF") {
		t.Errorf("exit %d, stderr %q: want exit 1 and one line naming root and CAP_BPF", code, stderr)
	}
}

// TestBadOutputBeforeLoad rejects an unparsable output address with exit 2.
// It runs unprivileged: the address error, not the privilege error, shows
// that the flags are checked before anything touches the kernel.
func TestBadOutputBeforeLoad(t *testing.T) {
	for _, out := range []string{"udp://", "udp://localhost", "udp://localhost:99999", "tcp://localhost:8125", "localhost:8125", "udp://h:1/path"} {
		code, stderr := asNobody(t, "--output", out)
		if code != 2 || !strings.Contains(stderr, "--output") || strings.Contains(stderr, "root") {
			t.Errorf("--output %q: exit %d, stderr %q; want exit 2 naming --output", out, code, stderr)
		}
	}
}

// TestRunShowsExecLinesAndDetaches runs the daemon as the README does,
// waits for a line counting a uniquely named process, interrupts it, and
// checks that its programs are gone from the kernel.
func TestRunShowsExecLinesAndDetaches(t *testing.T) {
	kerneltest.Require(t)
	helper, name := helperBinary(t)
	cmd := exec.Command(binary, "--admin-socket", filepath.Join(t.TempDir(), "admin.sock"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	start := time.Now()

	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "host.process.exec:") && containsTag(sc.Text(), "comm:"+name) {
				found <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var line string
	for line == "" && time.Since(start) < 5*time.Second {
		if err := exec.Command(helper).Run(); err != nil {
			t.Fatal(err)
		}
		select {
		case line = <-found:
		case <-time.After(100 * time.Millisecond):
		}
	}
	if line == "" {
		t.Fatalf("no exec line for %s within 5s; stderr:\n%s", name, stderr.String())
	}
	t.Logf("after %v: %s", time.Since(start).Round(time.Millisecond), line)

	ids, err := progIDs(cmd.Process.Pid)
	if err != nil || len(ids) == 0 {
		t.Fatalf("programs held by the daemon: %v, %v", ids, err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := wait(cmd, 5*time.Second); err != nil {
		t.Fatalf("after SIGINT: %v; stderr:\n%s", err, stderr.String())
	}
	// The kernel frees a detached program after an RCU grace period.
	for _, id := range ids {
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				break
			}
			info, _ := p.Info()
			p.Close()
			if time.Now().After(deadline) {
				t.Errorf("program %d (%v) is still loaded 2s after the daemon exited", id, info.Name)
				break
			}
		}
	}
}

func wait(cmd *exec.Cmd, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		cmd.Process.Kill()
		return fmt.Errorf("did not exit within %v", timeout)
	}
}

// progIDs lists the BPF programs that process pid holds file descriptors
// of, read from /proc/PID/fdinfo.
func progIDs(pid int) ([]ebpf.ProgramID, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := make(map[ebpf.ProgramID]bool)
	var ids []ebpf.ProgramID
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			v, ok := strings.CutPrefix(l, "prog_id:")
			if !ok {
				continue
			}
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil && !seen[ebpf.ProgramID(n)] {
				seen[ebpf.ProgramID(n)] = true
				ids = append(ids, ebpf.ProgramID(n))
			}
		}
	}
	return ids, nil
}

// helperBinary copies /bin/true to a uniquely named file.
func helperBinary(t *testing.T) (path, name string) {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name = "bpfst-" + hex.EncodeToString(b[:])
	src, err := os.ReadFile("/bin/true")
	if err != nil {
		kerneltest.Unavailable(t, "no /bin/true to exec: "+err.Error())
	}
	path = filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return path, name
}

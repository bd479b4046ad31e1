package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/bpfstatd/bpfstatd/deploy/image"
)

// requireEnv turns a skipped kernel test into a failed one, as the main
// module's internal/kerneltest does: CI sets it, and never passes by
// skipping.
const requireEnv = "BPFSTATD_REQUIRE_KERNEL"

// sourceEnv may name the bpfstatd checkout to build the image from;
// the default is the one this module sits in.
const sourceEnv = "BPFSTATD_SOURCE"

// What the downward API gives the test's pod.
const (
	testNodeName = "kernel-test-node"
	testHostIP   = "127.0.0.1" // the receiver listens on loopback
)

// requireKernel skips t, or fails it when requireEnv is "1", unless this
// process can run a pod: root, kernel BTF, and a go command to build the
// image with.
func requireKernel(t *testing.T) {
	t.Helper()
	var reason string
	switch _, btfErr := os.Stat("/sys/kernel/btf/vmlinux"); {
	case os.Geteuid() != 0:
		reason = "needs root to create namespaces, mount and chroot"
	case btfErr != nil:
		reason = "no kernel BTF: " + btfErr.Error()
	default:
		if _, err := exec.LookPath("go"); err != nil {
			reason = "no go command to build the image"
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("kernel test cannot run, and %s=1: %s", requireEnv, reason)
	}
	t.Skipf("kernel test skipped: %s (set %s=1 to fail instead)", reason, requireEnv)
}

// builtImage is the image built once for every pod test, unpacked.
var builtImage struct {
	once   sync.Once
	dir    string // removed by TestMain
	root   string
	config v1.Config
	err    error
}

// podImage builds the image from the bpfstatd checkout, writes it as the
// OCI archive `make image` writes, and unpacks it from that archive.
func podImage(t *testing.T) (root string, cfg v1.Config) {
	t.Helper()
	b := &builtImage
	b.once.Do(func() {
		src := os.Getenv(sourceEnv)
		if src == "" {
			src = ".."
		}
		if b.dir, b.err = os.MkdirTemp("", "bpfstatd-pod-"); b.err != nil {
			return
		}
		b.root, b.err = buildAndUnpack(src, b.dir)
		if b.err != nil {
			return
		}
		b.config, b.err = imageConfig(b.dir)
	})
	if b.err != nil {
		t.Fatalf("build the image: %v", b.err)
	}
	return b.root, b.config
}

func buildAndUnpack(src, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	idx, err := image.Build(ctx, image.Options{Source: src})
	if err != nil {
		return "", err
	}
	archive := filepath.Join(dir, "image.tar")
	var buf bytes.Buffer
	if err := image.WriteArchive(&buf, idx, "bpfstatd:test", time.Time{}); err != nil {
		return "", err
	}
	if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	layout := filepath.Join(dir, "oci")
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{layout, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	img, err := image.Open(archive, layout, image.DefaultPlatform())
	if err != nil {
		return "", err
	}
	return root, image.Unpack(img, root)
}

func imageConfig(dir string) (v1.Config, error) {
	img, err := image.Open(filepath.Join(dir, "image.tar"), filepath.Join(dir, "oci2"), image.DefaultPlatform())
	if err != nil {
		return v1.Config{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Config{}, err
	}
	return cf.Config, nil
}

// podFromManifest is the container of the DaemonSet that kustomization
// dir renders, as a runtime would run it from the image at root: the
// image's entrypoint and environment, then the manifest's, with the
// downward API answered for a test node; its capabilities, security
// settings and volumes. Each emptyDir is a new directory.
func podFromManifest(t *testing.T, dir, root string, cfg v1.Config) podSpec {
	t.Helper()
	ds := daemonSet(t, render(t, dir))
	c := ds.Spec.Template.Spec.Containers[0]
	s := podSpec{Root: root, ReadOnlyRoot: true}
	if sc := c.SecurityContext; sc != nil {
		s.Privileged = sc.Privileged != nil && *sc.Privileged
		s.NoNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
		s.ReadOnlyRoot = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
		if sc.Capabilities != nil {
			if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Fatalf("the pod test models drop: [ALL] only, not %v", sc.Capabilities.Drop)
			}
			for _, c := range sc.Capabilities.Add {
				s.Caps = append(s.Caps, "CAP_"+string(c))
			}
		}
	}
	if s.Privileged {
		// Every capability the runtime has: here, the test's.
		s.Caps = ownCaps(t)
	}

	vars := map[string]string{}
	s.Env = slices.Clone(cfg.Env)
	for _, e := range s.Env {
		k, v, _ := strings.Cut(e, "=")
		vars[k] = v
	}
	for _, e := range c.Env {
		v := expand(e.Value, vars)
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				t.Fatalf("env %s: the pod test answers only fieldRef", e.Name)
			}
			switch p := e.ValueFrom.FieldRef.FieldPath; p {
			case "spec.nodeName":
				v = testNodeName
			case "status.hostIP", "status.podIP":
				v = testHostIP
			case "metadata.namespace":
				v = ds.Namespace
			case "metadata.name":
				v = ds.Name + "-test"
			default:
				t.Fatalf("env %s: downward API field %s not modelled", e.Name, p)
			}
		}
		vars[e.Name] = v
		s.Env = append(s.Env, e.Name+"="+v)
	}
	s.Argv = cfg.Entrypoint
	if len(c.Command) > 0 {
		s.Argv = c.Command
	}
	args := cfg.Cmd
	if len(c.Command) > 0 || len(c.Args) > 0 {
		args = c.Args
	}
	s.Argv = append(slices.Clone(s.Argv), args...)
	for i := range s.Argv {
		s.Argv[i] = expand(s.Argv[i], vars)
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		switch {
		case !ok:
			t.Fatalf("volume mount %s: no such volume", m.Name)
		case v.HostPath != nil:
			s.Mounts = append(s.Mounts, podMount{Source: v.HostPath.Path, Target: m.MountPath, ReadOnly: m.ReadOnly})
		case v.EmptyDir != nil:
			s.Mounts = append(s.Mounts, podMount{Source: t.TempDir(), Target: m.MountPath, ReadOnly: m.ReadOnly})
		default:
			t.Fatalf("volume %s: the pod test models hostPath and emptyDir only", m.Name)
		}
	}
	return s
}

// ownCaps names the capabilities in this process's bounding set.
func ownCaps(t *testing.T) []string {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return strings.Split(capNames(mask), ",")
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
	return nil
}

// expand replaces $(NAME) with the variable's value when it is defined,
// as Kubernetes does in env values, command and args; $$ is a $.
var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func expand(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// setEnv replaces the value of name in env.
func setEnv(env []string, name, value string) []string {
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
	return append(env, name+"="+value)
}

func getEnv(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// receiver is a loopback UDP listener that keeps every line it is sent.
type receiver struct {
	pc    net.PacketConn
	mu    sync.Mutex
	lines []string
}

func listen(t *testing.T) *receiver {
	t.Helper()
	pc, err := net.ListenPacket("udp", testHostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{pc: pc}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.lines = append(r.lines, strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n")...)
			r.mu.Unlock()
		}
	}()
	return r
}

// sum adds the values of the counter lines named metric that carry every
// one of tags.
func (r *receiver) sum(metric string, tags ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for _, l := range r.lines {
		name, rest, _ := strings.Cut(l, ":")
		fields := strings.Split(rest, "|")
		if name != metric || len(fields) < 2 || fields[1] != "c" {
			continue
		}
		var have []string
		for _, f := range fields[2:] {
			if t, ok := strings.CutPrefix(f, "#"); ok {
				have = strings.Split(t, ",")
			}
		}
		if !slices.ContainsFunc(tags, func(t string) bool { return !slices.Contains(have, t) }) {
			n, _ := strconv.Atoi(fields[0])
			total += n
		}
	}
	return total
}

// shipTo points the pod's BPFSTATD_OUTPUT, which the manifest aims at
// the node's IP, at the receiver's port on that IP.
func shipTo(t *testing.T, s *podSpec, r *receiver) {
	t.Helper()
	out := getEnv(s.Env, "BPFSTATD_OUTPUT")
	u, err := url.Parse(out)
	if err != nil || u.Scheme != "udp" || u.Hostname() != testHostIP {
		t.Fatalf("BPFSTATD_OUTPUT %q: want udp:// to the node IP from the downward API (%s)", out, testHostIP)
	}
	u.Host = r.pc.LocalAddr().String()
	s.Env = setEnv(s.Env, "BPFSTATD_OUTPUT", u.String())
}

// execProgram runs a copy of true(1) named uniquely n times, and returns
// its name as the kernel reports it.
func execProgram(t *testing.T, n int) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := "podtest" + hex.EncodeToString(b[:])
	src, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := exec.Command(path).Run(); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// TestPodRunsImage runs the image as each kustomization's DaemonSet would
// run it on a node: in its own mount and PID namespaces, chrooted into the
// unpacked image, read-only, with the manifest's capabilities and no
// more, its volumes and its environment. The daemon loads, attaches, and
// ships the exec counts of a program the test runs to a loopback
// receiver, tagged with the node's name; the probes' command answers 0.
func TestPodRunsImage(t *testing.T) {
	requireKernel(t)
	root, cfg := podImage(t)
	for _, dir := range []string{baseDir, privilegedDir} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			s := podFromManifest(t, dir, root, cfg)
			r := listen(t)
			shipTo(t, &s, r)
			p := startPod(t, s)
			p.waitHealthy(t, 10*time.Second)

			const k = 25
			name := execProgram(t, k)
			for deadline := time.Now().Add(5 * time.Second); r.sum("host.process.exec", "comm:"+name) < k && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
			if got := r.sum("host.process.exec", "comm:"+name, "node:"+testNodeName); got != k {
				t.Errorf("receiver counted %d execs of %s tagged node:%s, want %d; daemon log:\n%s", got, name, testNodeName, k, p.stderr.String())
			}
			if out, code := p.exec(t, "bpfstatd", "--health"); code != 0 || strings.TrimSpace(out) != "healthy" {
				t.Errorf("bpfstatd --health: exit %d, %q", code, out)
			}
			if out, code := p.exec(t, "bpfstatd", "--drops"); code != 0 || !strings.Contains(out, "ring_full") {
				t.Errorf("bpfstatd --drops: exit %d, %q", code, out)
			}
			p.checkProcess(t, s)
			if code := p.stop(t); code != 0 {
				t.Errorf("daemon exit %d after SIGTERM; log:\n%s", code, p.stderr.String())
			}
		})
	}
}

// TestPodCapabilities removes each capability the DaemonSet adds, one at
// a time: the daemon must exit 1 at once, naming it. Together with
// TestPodRunsImage this proves the set is enough and each member needed;
// when a collector lands that needs another, TestPodRunsImage fails until
// the DaemonSet adds it, and this test then proves it is needed.
func TestPodCapabilities(t *testing.T) {
	requireKernel(t)
	root, cfg := podImage(t)
	full := podFromManifest(t, baseDir, root, cfg)
	if len(full.Caps) == 0 {
		t.Fatal("the DaemonSet adds no capability")
	}
	for _, c := range full.Caps {
		t.Run("without "+c, func(t *testing.T) {
			s := podFromManifest(t, baseDir, root, cfg)
			s.Caps = slices.DeleteFunc(slices.Clone(full.Caps), func(x string) bool { return x == c })
			shipTo(t, &s, listen(t))
			p := startPod(t, s)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				out, code := p.exec(t, "bpfstatd", "--health")
				t.Fatalf("daemon still running after 10s without %s (--health: exit %d, %q): the DaemonSet adds a capability it does not need; log:\n%s",
					c, code, out, p.stderr.String())
			}
			msg := p.stderr.String()
			if p.code != 1 || !strings.Contains(msg, c) || strings.Count(msg, "\n") != 1 {
				t.Errorf("without %s: exit %d, stderr %q; want exit 1 and one line naming %s", c, p.code, msg, c)
			}
			t.Logf("without %s: exit %d: %s", c, p.code, strings.TrimSpace(msg))
		})
	}
}

// checkProcess reads the running daemon's /proc entry: PID 1 of its own
// PID namespace, in its own mount namespace, root read-only, bounded by
// exactly the pod's capabilities, with no inheritable or ambient ones.
func (p *pod) checkProcess(t *testing.T, s podSpec) {
	t.Helper()
	pid := p.cmd.Process.Pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for line := range strings.Lines(string(status)) {
		k, v, _ := strings.Cut(line, ":")
		fields[k] = strings.TrimSpace(v)
	}
	if nspid := strings.Fields(fields["NSpid"]); len(nspid) != 2 || nspid[1] != "1" {
		t.Errorf("NSpid %q: want PID 1 in a PID namespace of its own", fields["NSpid"])
	}
	for _, ns := range []string{"mnt", "pid"} {
		theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		ours, _ := os.Readlink("/proc/self/ns/" + ns)
		if theirs == ours {
			t.Errorf("daemon shares the test's %s namespace", ns)
		}
	}
	want, err := capMask(s.Caps)
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]uint64{}
	for _, set := range []string{"CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"} {
		sets[set], _ = strconv.ParseUint(fields[set], 16, 64)
	}
	if sets["CapBnd"] != want&sets["CapBnd"] || sets["CapEff"]&^want != 0 || sets["CapPrm"]&^want != 0 {
		t.Errorf("capabilities beyond the pod's %#x: bounding %#x, permitted %#x, effective %#x", want, sets["CapBnd"], sets["CapPrm"], sets["CapEff"])
	}
	if sets["CapInh"] != 0 || sets["CapAmb"] != 0 {
		t.Errorf("inheritable %#x, ambient %#x: want none", sets["CapInh"], sets["CapAmb"])
	}
	if s.NoNewPrivs && fields["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs %q with allowPrivilegeEscalation false", fields["NoNewPrivs"])
	}
	t.Logf("daemon after start: effective %s, bounding %s (pod: %s)", capNames(sets["CapEff"]), capNames(sets["CapBnd"]), strings.Join(s.Caps, ","))
	for line := range strings.Lines(p.stderr.String()) {
		if strings.Contains(line, "capabilities not dropped") {
			t.Logf("daemon: %s", strings.TrimSpace(line))
		}
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mounts)) {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" && s.ReadOnlyRoot && !slices.Contains(strings.Split(f[5], ","), "ro") {
			t.Errorf("root mounted %s, want read-only", f[5])
		}
	}
}

// syncBuffer is a bytes.Buffer a process may write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// pod is a daemon started by startPod.
type pod struct {
	spec   podSpec
	cmd    *exec.Cmd
	stderr syncBuffer
	done   chan struct{} // closed when the daemon has exited
	code   int           // its exit code, once done
}

// startPod starts the pod's process; it is killed when the test ends, and
// with it its namespaces and mounts.
func startPod(t *testing.T, s podSpec) *pod {
	t.Helper()
	p := &pod{spec: s, done: make(chan struct{})}
	p.cmd = launcher(t, s, syscall.CLONE_NEWNS|syscall.CLONE_NEWPID)
	p.cmd.Stdout = io.Discard
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.code = 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// launcher is a command that runs this test binary as the pod's init: see
// podInit.
func launcher(t *testing.T, s podSpec, cloneflags uintptr) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = []string{podInitEnv + "=" + string(js)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// exec runs argv in the running pod, as kubectl exec and exec probes do:
// in its root, with its capabilities and environment. It returns the
// combined output and the exit code.
func (p *pod) exec(t *testing.T, argv ...string) (string, int) {
	t.Helper()
	s := p.spec
	s.Argv = argv
	s.Join = fmt.Sprintf("/proc/%d/root", p.cmd.Process.Pid)
	cmd := launcher(t, s, 0)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Start()
	timer := time.AfterFunc(5*time.Second, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("exec %v in the pod: %v", argv, err)
	}
	return out.String(), 0
}

// waitHealthy runs the probes' command until it answers 0.
func (p *pod) waitHealthy(t *testing.T, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-p.done:
			t.Fatalf("daemon exited %d before it was healthy; log:\n%s", p.code, p.stderr.String())
		default:
		}
		out, code := p.exec(t, "bpfstatd", "--health")
		if code == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpfstatd --health still exit %d after %v: %q; log:\n%s", code, limit, out, p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM, as the kubelet does, and returns the exit code.
func (p *pod) stop(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.code
	case <-time.After(5 * time.Second):
		t.Errorf("daemon still running 5s after SIGTERM")
		p.cmd.Process.Kill()
		<-p.done
		return p.code
	}
}

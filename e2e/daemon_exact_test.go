package e2e

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

// TestDaemonExactCounts runs the daemon in a network namespace of the
// test's, with a veth pair to a second one, shipping over a unixgram
// socket to statsd_exporter outside: K execs of a unique name, and P UDP
// datagrams each way across the pair. The exporter's totals equal the
// truth exactly: K for the name, and for each end of the pair in each
// direction the packets and bytes of the kernel's own link statistics
// (read through netlink), less what the ledger says was dropped. The
// daemon runs with --ring-shards: each CPU's records come through a ring of
// its own (the other tests use the one shared ring).
func TestDaemonExactCounts(t *testing.T) {
	requireE2E(t)
	const k, p = 500, 500
	nsA, nsB := newTestNS(t), newTestNS(t)
	a, b := newVeth(t, nsA, "bste-a", nsB, "bste-b")

	dir, err := os.MkdirTemp("", "bpfst-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exp := startExporter(t, filepath.Join(dir, "statsd.sock"))
	// The daemon's host namespace is nsA: it counts the links there.
	d := startDaemonWith(t, func(cmd *exec.Cmd) error {
		return nsA.do(cmd.Start)
	}, exp.output(), "--collectors", "process,net,oom", "--ring-shards", "--flush-interval", "200ms")
	name := uniqueName("bpfst-")
	helper := helperProgram(t, t.TempDir(), name)

	if err := runMany(helper, k, 2); err != nil {
		t.Fatal(err)
	}
	sent := pingPong(t, a, b, p)

	// One OOM kill: a uniquely named tail(1) reading /dev/zero in a
	// cgroup limited to 32 MiB.
	hogName, oomKills := oomKill(t)

	// The truth: the kernel's statistics of both ends.
	type want struct {
		end, dir       string
		packets, bytes uint64
	}
	var wants []want
	for _, e := range []*vethEnd{a, b} {
		if e.ns != nsA {
			continue // the daemon counts its own namespace's links only
		}
		ls := e.stats(t)
		wants = append(wants, want{e.name, "ingress", ls.RxPackets, ls.RxBytes}, want{e.name, "egress", ls.TxPackets, ls.TxBytes})
	}
	f, ok := exp.waitFor(t, 10*time.Second, func(f families) bool {
		for _, w := range wants {
			if f.sum("host_net_packets", "iface", w.end, "direction", w.dir) < float64(w.packets) {
				return false
			}
		}
		return f.sum(promExec, "comm", name) >= k && f.sum("host_oom_kill", "comm", hogName) >= float64(oomKills)
	})
	if !ok {
		t.Errorf("the exporter did not get every count within 10s")
	}
	time.Sleep(500 * time.Millisecond) // anything extra has time to arrive
	l := d.drops(t)
	f = exp.mustScrape(t)
	for _, w := range wants {
		gp, gb := f.sum("host_net_packets", "iface", w.end, "direction", w.dir), f.sum("host_net_bytes", "iface", w.end, "direction", w.dir)
		t.Logf("%s %s: exporter %v packets %v bytes; link statistics %d packets %d bytes", w.end, w.dir, gp, gb, w.packets, w.bytes)
		if gp != float64(w.packets) || gb != float64(w.bytes) {
			t.Errorf("%s %s: exporter %v packets, %v bytes; kernel link statistics %d packets, %d bytes",
				w.end, w.dir, gp, gb, w.packets, w.bytes)
		}
	}
	execs := f.sum(promExec, "comm", name)
	t.Logf("%d execs of %s: exporter %v; %d datagrams each way, %d payload bytes; ledger %s",
		k, name, execs, p, sent, l.nonZero())
	if want := float64(k) - float64(l.count("kernel", "ring_full", "exec")); execs != want {
		t.Errorf("exporter has %v execs of %s, want %v", execs, name, want)
	}
	kills := f.sum("host_oom_kill", "comm", hogName)
	t.Logf("OOM kills of %s: exporter %v, the cgroup's memory.oom_control %d", hogName, kills, oomKills)
	if kills != float64(oomKills)-float64(l.count("kernel", "ring_full", "oom")) {
		t.Errorf("exporter has %v OOM kills of %s; the kernel counted %d in its cgroup", kills, hogName, oomKills)
	}
	if lost := l.userLost() + l.count("kernel", "ring_full", ""); lost != 0 {
		t.Errorf("ledger counts losses: %s", l.nonZero())
	}
	if bad := exporterErrors(f); len(bad) != 0 {
		t.Errorf("statsd_exporter counted malformed input: %v", bad)
	}
	if took, err := d.terminate(t, 5*time.Second); err != nil {
		t.Errorf("after SIGTERM: %v (after %v)", err, took)
	}
}

// The network namespaces below follow bpf/net_test.go: IPv6 off and static
// neighbours, so that the links carry exactly what the test sends.

// testNS is a network namespace the test created, with a netlink handle in
// it. The namespace, and every link in it, goes when the test ends.
type testNS struct {
	ns netns.NsHandle
	nl *netlink.Handle
}

// onThread runs fn on a locked thread and puts the thread back in its
// network namespace afterwards; a thread that cannot go back is dropped.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	n := new(testNS)
	err := onThread(func() error {
		var err error
		if n.ns, err = netns.New(); err != nil {
			return err
		}
		for _, f := range []string{"all", "default"} {
			p := filepath.Join("/proc/sys/net/ipv6/conf", f, "disable_ipv6")
			if err := os.WriteFile(p, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		n.nl, err = netlink.NewHandleAt(n.ns, unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		kerneltest.Unavailable(t, "create network namespace: "+err.Error())
	}
	t.Cleanup(func() {
		n.nl.Close()
		n.ns.Close()
	})
	return n
}

// do runs fn on a thread in the namespace; a process it starts is in the
// namespace too.
func (n *testNS) do(fn func() error) error {
	return onThread(func() error {
		if err := netns.Set(n.ns); err != nil {
			return err
		}
		return fn()
	})
}

// vethEnd is one end of a veth pair.
type vethEnd struct {
	ns    *testNS
	name  string
	index int
	ip    net.IP
}

// newVeth creates a veth pair with end a in x and end b in y, addresses
// 10.78.0.1/30 and 10.78.0.2/30, static neighbours, both up.
func newVeth(t *testing.T, x *testNS, a string, y *testNS, b string) (ea, eb *vethEnd) {
	t.Helper()
	ea = &vethEnd{ns: x, name: a, ip: net.IPv4(10, 78, 0, 1).To4()}
	eb = &vethEnd{ns: y, name: b, ip: net.IPv4(10, 78, 0, 2).To4()}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b, PeerNamespace: netlink.NsFd(y.ns)}
	if err := x.nl.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s/%s: %v", a, b, err)
	}
	t.Cleanup(func() { x.nl.LinkDel(ea.link()) })
	var macs [2]net.HardwareAddr
	for i, e := range []*vethEnd{ea, eb} {
		l, err := e.ns.nl.LinkByName(e.name)
		if err != nil {
			t.Fatal(err)
		}
		e.index, macs[i] = l.Attrs().Index, l.Attrs().HardwareAddr
		if err := e.ns.nl.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: e.ip, Mask: net.CIDRMask(30, 32)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range []*vethEnd{ea, eb} {
		peer := []*vethEnd{eb, ea}[i]
		if err := e.ns.nl.NeighAdd(&netlink.Neigh{LinkIndex: e.index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: peer.ip, HardwareAddr: macs[1-i]}); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range []*vethEnd{ea, eb} {
		if err := e.ns.nl.LinkSetUp(e.link()); err != nil {
			t.Fatal(err)
		}
	}
	// Until the kernel's link watch finds a link up, its qdisc drops what
	// is sent.
	waitOperUp(t, ea, eb)
	return ea, eb
}

func (e *vethEnd) link() netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: e.index, Name: e.name}}
}

// stats reads the kernel's statistics of the link.
func (e *vethEnd) stats(t *testing.T) netlink.LinkStatistics {
	t.Helper()
	l, err := e.ns.nl.LinkByIndex(e.index)
	if err != nil {
		t.Fatal(err)
	}
	return *l.Attrs().Statistics
}

// listen opens a UDP socket on the end's address.
func (e *vethEnd) listen(t *testing.T) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := e.ns.do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: e.ip})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// oomKill runs a memory hog, a uniquely named copy of tail(1) reading
// /dev/zero, in a memory cgroup limited to 32 MiB without swap (v2, or the
// v1 memory hierarchy), waits for the kernel to kill it, and returns its
// name and the kernel's count of OOM kills in the cgroup.
func oomKill(t *testing.T) (string, int64) {
	t.Helper()
	tail, err := exec.LookPath("tail")
	if err != nil {
		kerneltest.Unavailable(t, "no tail(1) for a memory hog: "+err.Error())
	}
	name := uniqueName("oomh-")
	src, err := os.ReadFile(tail)
	if err != nil {
		t.Fatal(err)
	}
	hog := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(hog, src, 0o755); err != nil {
		t.Fatal(err)
	}
	const limit = "33554432"
	var dir, events string
	var files [][2]string
	switch {
	case strings.Contains(" "+readString("/sys/fs/cgroup/cgroup.subtree_control")+" ", " memory "):
		dir, events = filepath.Join("/sys/fs/cgroup", name), "memory.events"
		files = [][2]string{{"memory.max", limit}, {"memory.swap.max", "0"}}
	case fileExists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
		dir, events = filepath.Join("/sys/fs/cgroup/memory", name), "memory.oom_control"
		files = [][2]string{{"memory.limit_in_bytes", limit}, {"memory.memsw.limit_in_bytes", limit}}
	default:
		kerneltest.Unavailable(t, "no cgroup memory controller (v2 with memory enabled, or v1 at /sys/fs/cgroup/memory)")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		kerneltest.Unavailable(t, "cannot make a cgroup: "+err.Error())
	}
	t.Cleanup(func() {
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			for _, f := range strings.Fields(readString(filepath.Join(dir, "cgroup.procs"))) {
				if pid, _ := strconv.Atoi(f); pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
		}
		t.Errorf("cgroup %s not removed", dir)
	})
	for _, f := range files {
		if p := filepath.Join(dir, f[0]); fileExists(p) { // no swap accounting: no memsw file
			if err := os.WriteFile(p, []byte(f[1]), 0); err != nil {
				t.Fatalf("limit cgroup memory: %v", err)
			}
		}
	}
	// The shell waits in the test's cgroup until moved, then becomes the
	// hog: the pid stays the same.
	cmd := exec.Command("/bin/sh", "-c", `read go && exec "$0" /dev/zero`, hog)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatalf("move the hog into its cgroup: %v", err)
	}
	stdin.Write([]byte("go\n"))
	select {
	case err = <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the hog was not killed within 10s")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the hog ended with %v, want killed by SIGKILL", err)
	}
	for _, l := range strings.Split(readString(filepath.Join(dir, events)), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return name, n
		}
	}
	t.Fatalf("no oom_kill count in %s", events)
	return "", 0
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

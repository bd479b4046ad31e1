package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestDaemonLinkCut puts statsd_exporter in a network namespace of its own,
// reached from the daemon's over a veth pair, and cuts the path to it while
// the exporter itself stays up: the same guarantees as when the receiver
// dies (see TestDaemonReceiverDownUDP) hold. The breaker opens within 5 s
// and --health says why, memory stays flat while it is open (5 s; 60 s
// with BPFSTATD_E2E_LONG=1), shipping resumes within 10 s of the restore,
// and the exporter has every exec the test ran, less what the ledger
// counts as lost.
//
// A veth whose peer goes down loses its carrier, and the kernel then drops
// what is sent on it in its noop qdisc, silently: the send succeeds even
// with IP_RECVERR (the drop returns NET_XMIT_CN, which UDP does not report).
// Only with net.ipv4.conf.*.ignore_routes_with_linkdown=1 is the route
// through the link ignored, so that sends fail with ENETUNREACH: the test
// sets it in the daemon's namespace, as a host must for local carrier loss
// to be seen.
func TestDaemonLinkCut(t *testing.T) {
	requireE2E(t)
	hold := longForm("BPFSTATD_E2E_LONG", 5*time.Second, 60*time.Second)
	cuts := []struct {
		name string
		cut  func(t *testing.T, daemon, receiver *vethEnd) (restore func())
	}{
		{"link-down", func(t *testing.T, d, r *vethEnd) func() {
			if err := r.ns.nl.LinkSetDown(r.link()); err != nil {
				t.Fatalf("set %s down: %v", r.name, err)
			}
			return func() {
				if err := r.ns.nl.LinkSetUp(r.link()); err != nil {
					t.Fatalf("set %s up: %v", r.name, err)
				}
				waitOperUp(t, d, r)
			}
		}},
		{"blackhole-route", routeCut(unix.RTN_BLACKHOLE)},
	}
	if os.Getenv("BPFSTATD_E2E_LONG") == "1" {
		cuts = append(cuts, struct {
			name string
			cut  func(t *testing.T, daemon, receiver *vethEnd) (restore func())
		}{"unreachable-route", routeCut(unix.RTN_UNREACHABLE)})
	}
	for _, c := range cuts {
		t.Run(c.name, func(t *testing.T) {
			testOutage(t, outage{hold: hold, checkRSS: true, link: func(t *testing.T) (*exporter, func(*exec.Cmd) error, func(), func()) {
				nsD, nsR := newTestNS(t), newTestNS(t)
				d, r := newVeth(t, nsD, "bstc-d", nsR, "bstc-r")
				for _, f := range []string{"all", "default", d.name} {
					if err := nsD.writeSysctl(filepath.Join("net/ipv4/conf", f, "ignore_routes_with_linkdown"), "1"); err != nil {
						t.Fatal(err)
					}
				}
				nsR.loUp(t)
				exp := &exporter{ns: nsR, udpHost: r.ip.String(), udpPort: 9125, web: "127.0.0.1:9102"}
				exp.start(t)
				t.Cleanup(func() { exp.stop(t) })
				var restore func()
				return exp, func(cmd *exec.Cmd) error { return nsD.do(cmd.Start) },
					func() { restore = c.cut(t, d, r) },
					func() { restore() }
			}})
		})
	}
}

// routeCut cuts the path to the receiver with a route of type typ to its
// address in the daemon's namespace.
func routeCut(typ int) func(t *testing.T, d, r *vethEnd) func() {
	return func(t *testing.T, d, r *vethEnd) func() {
		route := &netlink.Route{Dst: &net.IPNet{IP: r.ip, Mask: net.CIDRMask(32, 32)}, Type: typ}
		if err := d.ns.nl.RouteAdd(route); err != nil {
			t.Fatalf("add route %v: %v", route, err)
		}
		t.Cleanup(func() { d.ns.nl.RouteDel(route) })
		return func() {
			if err := d.ns.nl.RouteDel(route); err != nil {
				t.Fatalf("delete route %v: %v", route, err)
			}
		}
	}
}

// writeSysctl writes value to /proc/sys/name as seen in the namespace.
func (n *testNS) writeSysctl(name, value string) error {
	return n.do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		return nil
	})
}

// loUp sets the namespace's loopback link up.
func (n *testNS) loUp(t *testing.T) {
	t.Helper()
	lo, err := n.nl.LinkByName("lo")
	if err == nil {
		err = n.nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("set lo up: %v", err)
	}
}

// waitOperUp waits until every end is operationally up: until the
// kernel's link watch finds a link up, its qdisc drops what is sent.
func waitOperUp(t *testing.T, ends ...*vethEnd) {
	t.Helper()
	for _, e := range ends {
		for start := time.Now(); ; time.Sleep(time.Millisecond) {
			l, err := e.ns.nl.LinkByIndex(e.index)
			if err != nil {
				t.Fatal(err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("%s not up after 3s", e.name)
			}
		}
	}
}

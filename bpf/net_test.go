package bpf_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

// The kernel tests of the net collector run it in network namespaces they
// create, as the "host" namespace, with veth pairs to a second namespace;
// IPv6 is off and neighbours are static, so the links carry exactly what
// the test sends. The truth they compare with is the kernel's own link
// statistics (through netlink) and the datagrams the test sent.

var netModes = []bpf.NetMode{bpf.NetTCX, bpf.NetClsact}

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

func newTestNS(tb testing.TB) *testNS {
	tb.Helper()
	kerneltest.Require(tb)
	t := new(testNS)
	err := onThread(func() error {
		var err error
		if t.ns, err = netns.New(); err != nil {
			return err
		}
		for _, f := range []string{"all", "default"} {
			p := filepath.Join("/proc/sys/net/ipv6/conf", f, "disable_ipv6")
			if err := os.WriteFile(p, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		t.nl, err = netlink.NewHandleAt(t.ns, unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		kerneltest.Unavailable(tb, "create network namespace: "+err.Error())
	}
	tb.Cleanup(func() {
		t.nl.Close()
		t.ns.Close()
	})
	return t
}

// do runs fn on a thread in the namespace.
func (t *testNS) do(fn func() error) error {
	return onThread(func() error {
		if err := netns.Set(t.ns); err != nil {
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
// 10.77.n.1/30 and 10.77.n.2/30, static neighbours, both up.
func newVeth(tb testing.TB, x *testNS, a string, y *testNS, b string, n int) (ea, eb *vethEnd) {
	tb.Helper()
	ea = &vethEnd{ns: x, name: a, ip: net.IPv4(10, 77, byte(n), 1).To4()}
	eb = &vethEnd{ns: y, name: b, ip: net.IPv4(10, 77, byte(n), 2).To4()}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b, PeerNamespace: netlink.NsFd(y.ns)}
	if err := x.nl.LinkAdd(v); err != nil {
		tb.Fatalf("add veth %s/%s: %v", a, b, err)
	}
	tb.Cleanup(func() { ea.del() })
	var macs [2]net.HardwareAddr
	for i, e := range []*vethEnd{ea, eb} {
		l, err := e.ns.nl.LinkByName(e.name)
		if err != nil {
			tb.Fatal(err)
		}
		e.index, macs[i] = l.Attrs().Index, l.Attrs().HardwareAddr
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: e.ip, Mask: net.CIDRMask(30, 32)}}
		if err := e.ns.nl.AddrAdd(l, addr); err != nil {
			tb.Fatal(err)
		}
	}
	for i, e := range []*vethEnd{ea, eb} {
		peer := []*vethEnd{eb, ea}[i]
		err := e.ns.nl.NeighAdd(&netlink.Neigh{
			LinkIndex: e.index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: peer.ip, HardwareAddr: macs[1-i],
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	for _, e := range []*vethEnd{ea, eb} {
		if err := e.ns.nl.LinkSetUp(e.link()); err != nil {
			tb.Fatal(err)
		}
	}
	ea.waitUp(tb)
	eb.waitUp(tb)
	return ea, eb
}

// waitUp waits for the kernel's link watch to find the link up: until then
// its qdisc is noop, which drops what is sent. (When both ends of a veth
// pair have the same ifindex, in two namespaces, the event is not urgent
// and may wait up to a second.)
func (e *vethEnd) waitUp(tb testing.TB) {
	tb.Helper()
	for start := time.Now(); time.Since(start) < 3*time.Second; time.Sleep(time.Millisecond) {
		l, err := e.ns.nl.LinkByIndex(e.index)
		if err != nil {
			tb.Fatal(err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return
		}
	}
	tb.Fatalf("%s not up after 3s", e.name)
}

func (e *vethEnd) link() netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: e.index, Name: e.name}}
}

func (e *vethEnd) del() error { return e.ns.nl.LinkDel(e.link()) }

// stats reads the kernel's statistics of the link.
func (e *vethEnd) stats(tb testing.TB) netlink.LinkStatistics {
	tb.Helper()
	l, err := e.ns.nl.LinkByIndex(e.index)
	if err != nil {
		tb.Fatal(err)
	}
	return *l.Attrs().Statistics
}

// listen opens a UDP socket on the end's address.
func (e *vethEnd) listen(tb testing.TB) *net.UDPConn {
	tb.Helper()
	var c *net.UDPConn
	err := e.ns.do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: e.ip})
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// frameSize is the size, from the Ethernet header on, of a UDP/IPv4
// datagram with n bytes of payload.
func frameSize(n int) uint64 { return uint64(14 + 20 + 8 + n) }

// pingPong sends a datagram of each size from ca to cb and cb echoes it
// back; it returns the bytes of the frames sent each way.
func pingPong(tb testing.TB, ca, cb *net.UDPConn, sizes []int) (frameBytes uint64) {
	tb.Helper()
	buf, rbuf := make([]byte, 2048), make([]byte, 2048)
	to, back := cb.LocalAddr().(*net.UDPAddr), ca.LocalAddr().(*net.UDPAddr)
	deadline := time.Now().Add(5 * time.Second)
	ca.SetReadDeadline(deadline)
	cb.SetReadDeadline(deadline)
	for _, n := range sizes {
		if _, err := ca.WriteToUDP(buf[:n], to); err != nil {
			tb.Fatal(err)
		}
		if m, _, err := cb.ReadFromUDP(rbuf); err != nil || m != n {
			tb.Fatalf("receive %d bytes: got %d, %v", n, m, err)
		}
		if _, err := cb.WriteToUDP(buf[:n], back); err != nil {
			tb.Fatal(err)
		}
		if m, _, err := ca.ReadFromUDP(rbuf); err != nil || m != n {
			tb.Fatalf("receive %d bytes back: got %d, %v", n, m, err)
		}
		frameBytes += frameSize(n)
	}
	return frameBytes
}

// exchange runs pingPong between sockets on a and b, and closes them.
func exchange(tb testing.TB, a, b *vethEnd, sizes []int) (frameBytes uint64) {
	tb.Helper()
	ca, cb := a.listen(tb), b.listen(tb)
	defer ca.Close()
	defer cb.Close()
	return pingPong(tb, ca, cb, sizes)
}

// sizes returns p payload sizes from 1 to 1400 bytes.
func sizes(p int) []int {
	s := make([]int, p)
	for i := range s {
		s[i] = 1 + (i*37)%1400
	}
	return s
}

func newShared(tb testing.TB) *bpf.Shared {
	tb.Helper()
	kerneltest.Require(tb)
	sh, err := bpf.NewShared(bpf.RingOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sh.Close() })
	return sh
}

// loadNet loads the net collector with the namespace as its host's.
func loadNet(tb testing.TB, ns *testNS, opts bpf.NetOptions) *bpf.Net {
	tb.Helper()
	return loadNetWith(tb, newShared(tb), ns, opts)
}

func loadNetWith(tb testing.TB, sh *bpf.Shared, ns *testNS, opts bpf.NetOptions) *bpf.Net {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var n *bpf.Net
	err := ns.do(func() (err error) {
		n, err = bpf.LoadNet(sh, opts)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	sh.ReleaseBTF()
	return n
}

func attach(tb testing.TB, n *bpf.Net, mode bpf.NetMode) {
	tb.Helper()
	if err := n.Attach(); err != nil {
		tb.Fatal(err)
	}
	if got := n.Mode(); got != mode {
		tb.Fatalf("attached in mode %s, want %s", got, mode)
	}
}

func read(tb testing.TB, n *bpf.Net) []bpf.NetStats {
	tb.Helper()
	stats, err := n.Read()
	if err != nil {
		tb.Fatal(err)
	}
	return stats
}

// find returns the live counts of a link in one direction.
func find(stats []bpf.NetStats, name string, d bpf.NetDirection) (bpf.NetStats, bool) {
	for _, s := range stats {
		if s.Interface == name && s.Direction == d && !s.Gone {
			return s, true
		}
	}
	return bpf.NetStats{}, false
}

// checkCounts compares the collector's counts of e with the kernel's
// statistics of e, as deltas from before (zero: since the link was made).
func checkCounts(tb testing.TB, n *bpf.Net, e *vethEnd, before netlink.LinkStatistics) {
	tb.Helper()
	stats := read(tb, n)
	ls := e.stats(tb)
	want := [2][2]uint64{
		{ls.RxPackets - before.RxPackets, ls.RxBytes - before.RxBytes},
		{ls.TxPackets - before.TxPackets, ls.TxBytes - before.TxBytes},
	}
	for d := range bpf.NetDirection(2) {
		s, ok := find(stats, e.name, d)
		if !ok {
			tb.Errorf("%s %s: not counted", e.name, d)
			continue
		}
		if s.Index != e.index || s.Packets != want[d][0] || s.Bytes != want[d][1] {
			tb.Errorf("%s %s: ifindex %d, %d packets, %d bytes; link statistics: ifindex %d, %d packets, %d bytes",
				e.name, d, s.Index, s.Packets, s.Bytes, e.index, want[d][0], want[d][1])
		}
	}
}

// TestNetVethCounts sends P datagrams of known sizes each way across a
// veth pair and compares the packets and bytes counted on each end, in
// each direction, with the kernel's link statistics and with what was sent.
// A collector runs in each of the two namespaces.
func TestNetVethCounts(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode.String(), func(t *testing.T) {
			nsA, nsB := newTestNS(t), newTestNS(t)
			a, b := newVeth(t, nsA, "bst-a0", nsB, "bst-b0", 1)
			ca, cb := a.listen(t), b.listen(t)
			shA := newShared(t)
			na := loadNetWith(t, shA, nsA, bpf.NetOptions{Mode: mode})
			nb := loadNet(t, nsB, bpf.NetOptions{Mode: mode})
			attach(t, na, mode)
			attach(t, nb, mode)
			beforeA, beforeB := a.stats(t), b.stats(t)

			const p = 1000
			frames := pingPong(t, ca, cb, sizes(p))

			checkCounts(t, na, a, beforeA)
			checkCounts(t, nb, b, beforeB)
			stats := read(t, na)
			for d := range bpf.NetDirection(2) {
				s, _ := find(stats, a.name, d)
				if s.Packets != p || s.Bytes != frames {
					t.Errorf("%s %s: %d packets, %d bytes; sent %d frames of %d bytes", a.name, d, s.Packets, s.Bytes, p, frames)
				}
				t.Logf("%s %s: %d packets, %d bytes", a.name, d, s.Packets, s.Bytes)
			}
			if _, ok := find(stats, "lo", bpf.NetIngress); !ok {
				t.Error("lo is not counted")
			}
			for _, prog := range []bpf.Program{bpf.ProgNetIngress, bpf.ProgNetEgress} {
				l, err := shA.Ledger(prog)
				if err != nil {
					t.Fatal(err)
				}
				if l.Seen != p || !l.Balanced() {
					t.Errorf("%s ledger %+v: want %d packets seen, all counted", prog, l, p)
				}
			}
		})
	}
}

// TestNetNewLink creates a veth pair after Attach: the collector must
// count it within a second, exactly.
func TestNetNewLink(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode.String(), func(t *testing.T) {
			nsA, nsB := newTestNS(t), newTestNS(t)
			n := loadNet(t, nsA, bpf.NetOptions{Mode: mode})
			attach(t, n, mode)

			start := time.Now()
			a, b := newVeth(t, nsA, "bst-new0", nsB, "bst-new1", 2)
			made := time.Since(start)
			for {
				if _, ok := find(read(t, n), a.name, bpf.NetEgress); ok {
					break
				}
				if time.Since(start) > time.Second {
					t.Fatalf("%s not counted 1s after it was created", a.name)
				}
				time.Sleep(time.Millisecond)
			}
			t.Logf("%s counted %v after it was created (creating and configuring it took %v)", a.name, time.Since(start), made)
			pingPong(t, a.listen(t), b.listen(t), sizes(100))
			checkCounts(t, n, a, netlink.LinkStatistics{})
		})
	}
}

// TestNetLinkGone deletes, and renames, counted links: the collector
// releases them, reports their last counts once and keeps no file
// descriptor or counter for them.
func TestNetLinkGone(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode.String(), func(t *testing.T) {
			nsA, nsB := newTestNS(t), newTestNS(t)
			sh := newShared(t)
			fds0 := openFDs(t)
			n := loadNetWith(t, sh, nsA, bpf.NetOptions{Mode: mode, Exclude: []string{"lo"}})
			attach(t, n, mode)
			a, b := newVeth(t, nsA, "bst-gone0", nsB, "bst-gone1", 3)
			waitCounted(t, n, a.name)
			exchange(t, a, b, sizes(10))
			want := read(t, n)
			fds := openFDs(t)

			if err := a.del(); err != nil {
				t.Fatal(err)
			}
			var gone []bpf.NetStats
			for start := time.Now(); len(gone) < 2; {
				if time.Since(start) > time.Second {
					t.Fatalf("%s deleted a second ago, still counted: %+v", a.name, read(t, n))
				}
				time.Sleep(time.Millisecond)
				for _, s := range read(t, n) {
					if !s.Gone {
						t.Fatalf("%s deleted, still counted: %+v", a.name, s)
					}
					gone = append(gone, s)
				}
			}
			for i := range want {
				want[i].Gone = true
			}
			if fmt.Sprint(gone) != fmt.Sprint(want) {
				t.Errorf("last counts %+v, want %+v", gone, want)
			}
			if stats := read(t, n); len(stats) != 0 {
				t.Errorf("reported again: %+v", stats)
			}
			perLink := 0
			if mode == bpf.NetTCX {
				perLink = 2 // a TCX link each way
			}
			if got := openFDs(t); got != fds-perLink {
				t.Errorf("%d file descriptors open after the link went, %d before", got, fds)
			}
			if keys := counterKeys(t, a.index); keys != 0 {
				t.Errorf("%d counters of ifindex %d left in the kernel", keys, a.index)
			}

			// A renamed link ends its counts under the old name and starts
			// again from zero under the new.
			c, d := newVeth(t, nsA, "bst-old0", nsB, "bst-old1", 4)
			waitCounted(t, n, c.name)
			exchange(t, c, d, sizes(5))
			if err := nsA.nl.LinkSetDown(c.link()); err != nil {
				t.Fatal(err)
			}
			if err := nsA.nl.LinkSetName(c.link(), "bst-new0"); err != nil {
				t.Fatal(err)
			}
			var old []bpf.NetStats
			for start := time.Now(); len(old) < 2 && time.Since(start) < time.Second; time.Sleep(time.Millisecond) {
				for _, s := range read(t, n) {
					if s.Gone {
						old = append(old, s)
					}
				}
			}
			for _, s := range read(t, n) {
				if s.Interface != "bst-new0" || s.Packets != 0 || s.Gone {
					t.Errorf("after the rename: %+v", s)
				}
			}
			if len(old) != 2 || old[0].Interface != c.name || old[0].Packets != 5 || old[1].Packets != 5 {
				t.Errorf("last counts of %s: %+v", c.name, old)
			}

			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if got := openFDs(t); got != fds0 {
				t.Errorf("%d file descriptors open after Close, %d before LoadNet", got, fds0)
			}
		})
	}
}

// waitCounted waits up to a second for the collector to count a link.
func waitCounted(tb testing.TB, n *bpf.Net, name string) {
	tb.Helper()
	for start := time.Now(); time.Since(start) < time.Second; time.Sleep(time.Millisecond) {
		if _, ok := find(read(tb, n), name, bpf.NetIngress); ok {
			return
		}
	}
	tb.Fatalf("%s not counted after a second", name)
}

// openFDs counts this process's open file descriptors.
func openFDs(tb testing.TB) int {
	tb.Helper()
	runtime.GC() // close what finalizers would
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(fds)
}

// counterKeys counts the keys for ifindex in every net_counters map this
// process holds open.
func counterKeys(tb testing.TB, ifindex int) int {
	tb.Helper()
	fds, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		info, err := os.ReadFile("/proc/self/fdinfo/" + fd.Name())
		if err != nil {
			continue
		}
		_, rest, ok := strings.Cut(string(info), "map_id:\t")
		if !ok {
			continue
		}
		id, _ := strconv.Atoi(strings.Fields(rest)[0])
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			continue
		}
		if mi, err := m.Info(); err == nil && mi.Name == "net_counters" {
			var key [2]uint32
			for it := m.Iterate(); it.Next(&key, new([]uint64)); {
				if key[0] == uint32(ifindex) {
					n++
				}
			}
		}
		m.Close()
	}
	return n
}

// foreign is another program's state on a link: a program that counts the
// packets it sees in its own map and lets them through, attached by the
// test as TCX programs and clsact filters.
type foreign struct {
	counts *ebpf.Map
	prog   [4]*ebpf.Program // one per counter: TCX in, TCX out, filter in, filter out
}

func newForeign(tb testing.TB) *foreign {
	tb.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	f := &foreign{counts: m}
	for i := range f.prog {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.SchedCLS, License: "GPL",
			Instructions: asm.Instructions{
				asm.StoreImm(asm.RFP, -4, int64(i), asm.Word),
				asm.LoadMapPtr(asm.R1, m.FD()),
				asm.Mov.Reg(asm.R2, asm.RFP),
				asm.Add.Imm(asm.R2, -4),
				asm.FnMapLookupElem.Call(),
				asm.JEq.Imm(asm.R0, 0, "out"),
				asm.Mov.Imm(asm.R1, 1),
				asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
				asm.Mov.Imm(asm.R0, -1).WithSymbol("out"), // TCX_NEXT, TC_ACT_UNSPEC
				asm.Return(),
			},
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { p.Close() })
		f.prog[i] = p
	}
	return f
}

func (f *foreign) count(tb testing.TB, i uint32) uint64 {
	tb.Helper()
	var n uint64
	if err := f.counts.Lookup(i, &n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// attachTCX attaches the TCX programs to e.
func (f *foreign) attachTCX(tb testing.TB, e *vethEnd) {
	tb.Helper()
	for i, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		var l link.Link
		err := e.ns.do(func() (err error) {
			l, err = link.AttachTCX(link.TCXOptions{Interface: e.index, Program: f.prog[i], Attach: at})
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { l.Close() })
	}
}

// filters returns the foreign filters of the test: a BPF filter each way
// and, on egress, a u32 filter that matches every packet and ends the
// chain with TC_ACT_OK.
func (f *foreign) filters(e *vethEnd) []netlink.Filter {
	attrs := func(parent uint32, prio uint16) netlink.FilterAttrs {
		return netlink.FilterAttrs{LinkIndex: e.index, Parent: parent, Handle: 7, Priority: prio, Protocol: unix.ETH_P_ALL}
	}
	return []netlink.Filter{
		&netlink.BpfFilter{FilterAttrs: attrs(netlink.HANDLE_MIN_INGRESS, 100), Fd: f.prog[2].FD(), Name: "foreign_in", DirectAction: true},
		&netlink.BpfFilter{FilterAttrs: attrs(netlink.HANDLE_MIN_EGRESS, 100), Fd: f.prog[3].FD(), Name: "foreign_out", DirectAction: true},
		&netlink.U32{FilterAttrs: attrs(netlink.HANDLE_MIN_EGRESS, 200), ClassId: netlink.MakeHandle(1, 1)},
	}
}

func addClsact(tb testing.TB, e *vethEnd) {
	tb.Helper()
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: e.index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := e.ns.nl.QdiscAdd(q); err != nil {
		tb.Fatal(err)
	}
}

// tcState describes the qdiscs, filters and TCX programs on a link, for
// comparison before and after.
func tcState(tb testing.TB, e *vethEnd) string {
	tb.Helper()
	var b strings.Builder
	qs, err := e.ns.nl.QdiscList(e.link())
	if err != nil {
		tb.Fatal(err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			fmt.Fprintf(&b, "qdisc clsact %x;", q.Attrs().Handle)
		}
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := e.ns.nl.FilterList(e.link(), parent)
		if err != nil && !errors.Is(err, unix.EINVAL) {
			tb.Fatal(err)
		}
		for _, f := range fs {
			a := f.Attrs()
			fmt.Fprintf(&b, " filter %x prio %d handle %x %s", parent, a.Priority, a.Handle, f.Type())
			if bf, ok := f.(*netlink.BpfFilter); ok {
				fmt.Fprintf(&b, " %q id %d", bf.Name, bf.Id)
			}
			b.WriteString(";")
		}
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		var res *link.QueryResult
		err := e.ns.do(func() (err error) {
			res, err = link.QueryPrograms(link.QueryOptions{Target: e.index, Attach: at})
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		for _, p := range res.Programs {
			fmt.Fprintf(&b, " tcx %s prog %d;", at, p.ID)
		}
	}
	return b.String()
}

// TestNetForeignFilters puts TCX programs, a clsact qdisc and filters of
// someone else's on a link, attaches and detaches the collector, and checks
// that all of them are still there, in the same order, and saw every packet
// while the collector was attached. In clsact mode, it also checks the
// qdisc the collector creates where there is none, and a link whose filter
// priority is taken.
func TestNetForeignFilters(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode.String(), func(t *testing.T) {
			nsA, nsB := newTestNS(t), newTestNS(t)
			a, b := newVeth(t, nsA, "bst-f0", nsB, "bst-f1", 5)
			f := newForeign(t)
			f.attachTCX(t, a)
			addClsact(t, a)
			for _, fl := range f.filters(a) {
				if err := nsA.nl.FilterAdd(fl); err != nil {
					t.Fatalf("add %s filter: %v", fl.Type(), err)
				}
			}
			before := tcState(t, a)
			t.Logf("before: %s", before)

			n := loadNet(t, nsA, bpf.NetOptions{Mode: mode, Include: []string{"bst-*"}})
			attach(t, n, mode)
			during := tcState(t, a)
			t.Logf("attached: %s", during)
			first := "prio 1 handle bfd bpf \"bpfstatd_net_egress\""
			if len(during) <= len(before) || !strings.Contains(during, first) == (mode == bpf.NetClsact) {
				t.Errorf("attached in %s mode: %s", mode, during)
			}
			ls := a.stats(t)
			pingPong(t, a.listen(t), b.listen(t), sizes(200))
			checkCounts(t, n, a, ls)
			lsAfter := a.stats(t)
			rx, tx := lsAfter.RxPackets-ls.RxPackets, lsAfter.TxPackets-ls.TxPackets
			for i, want := range []uint64{rx, tx, rx, tx} {
				if got := f.count(t, uint32(i)); got != want {
					t.Errorf("foreign program %d saw %d packets while ours ran, the link %d", i, got, want)
				}
			}

			if err := n.Detach(); err != nil {
				t.Fatal(err)
			}
			if after := tcState(t, a); after != before {
				t.Errorf("after Detach:\n%s\nwant\n%s", after, before)
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if after := tcState(t, a); after != before {
				t.Errorf("after Close:\n%s\nwant\n%s", after, before)
			}
			if mode == bpf.NetClsact {
				testOwnQdisc(t, nsA, nsB)
			}
		})
	}
}

// testOwnQdisc checks, in clsact mode, that the collector removes the
// clsact qdisc it created unless someone else's filter is on it, and that
// it leaves alone a link on which another filter holds the priority it is
// told to use.
func testOwnQdisc(t *testing.T, nsA, nsB *testNS) {
	a, _ := newVeth(t, nsA, "bst-q0", nsB, "bst-q1", 6)
	c, _ := newVeth(t, nsA, "bst-p0", nsB, "bst-p1", 7)
	addClsact(t, c)
	const prio = 300
	taken := &netlink.U32{FilterAttrs: netlink.FilterAttrs{
		LinkIndex: c.index, Parent: netlink.HANDLE_MIN_INGRESS, Priority: prio, Protocol: unix.ETH_P_ALL,
	}}
	if err := nsA.nl.FilterAdd(taken); err != nil {
		t.Fatal(err)
	}
	bare, takenState := tcState(t, a), tcState(t, c)

	n := loadNet(t, nsA, bpf.NetOptions{Mode: bpf.NetClsact, Include: []string{"bst-q0", "bst-p0"}, FilterPriority: prio})
	for round := range 2 {
		attach(t, n, bpf.NetClsact)
		if s := tcState(t, a); !strings.Contains(s, "clsact") || !strings.Contains(s, "bpfstatd_net_egress") {
			t.Errorf("round %d: attached: %s", round, s)
		}
		if _, ok := find(read(t, n), c.name, bpf.NetIngress); ok {
			t.Errorf("%s counted, though another filter holds priority %d", c.name, prio)
		}
		if s := tcState(t, c); s != takenState {
			t.Errorf("%s changed: %s, was %s", c.name, s, takenState)
		}
		want := bare
		if round == 1 { // someone else adds a filter to our qdisc
			if err := nsA.nl.FilterAdd(newForeign(t).filters(a)[2]); err != nil {
				t.Fatal(err)
			}
			want = "qdisc clsact ffff0000; filter fffffff3 prio 200 handle 80000007 u32;"
		}
		if err := n.Detach(); err != nil {
			t.Fatal(err)
		}
		if s := tcState(t, a); s != want {
			t.Errorf("round %d: after Detach: %q, want %q", round, s, want)
		}
	}
}

// TestNetAutoMode checks that NetAuto attaches TCX links on a kernel that
// has them (Linux 6.6 and later).
func TestNetAutoMode(t *testing.T) {
	n := loadNet(t, newTestNS(t), bpf.NetOptions{})
	var uts unix.Utsname
	unix.Uname(&uts)
	want := bpf.NetTCX
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor)
	if major < 6 || (major == 6 && minor < 6) {
		want = bpf.NetClsact
	}
	attach(t, n, want)
	if _, ok := find(read(t, n), "lo", bpf.NetEgress); !ok {
		t.Error("lo is not counted")
	}
}

// TestNetOptions checks that bad options are refused before anything is
// loaded.
func TestNetOptions(t *testing.T) {
	for _, opts := range []bpf.NetOptions{
		{Include: []string{"eth[0"}},
		{Exclude: []string{"veth*", "\\"}},
		{Mode: 7},
		{MaxLinks: -1},
	} {
		if _, err := bpf.LoadNet(nil, opts); err == nil {
			t.Errorf("LoadNet(%+v) succeeded", opts)
		} else {
			t.Log(err)
		}
	}
}

// BenchmarkNetPacket sends 64-byte UDP datagrams back and forth across a
// veth pair, one end counted, and reports the round trip's cost with no
// collector, with TCX programs and with clsact filters, and the programs'
// own run time per packet from the kernel's BPF statistics.
func BenchmarkNetPacket(b *testing.B) {
	for _, mode := range []bpf.NetMode{bpf.NetAuto, bpf.NetTCX, bpf.NetClsact} {
		name := mode.String()
		if mode == bpf.NetAuto {
			name = "none"
		}
		b.Run(name, func(b *testing.B) {
			nsA, nsB := newTestNS(b), newTestNS(b)
			x, y := newVeth(b, nsA, "bst-bench0", nsB, "bst-bench1", 8)
			cx, cy := x.listen(b), y.listen(b)
			var progs []*ebpf.Program
			if mode != bpf.NetAuto {
				n := loadNet(b, nsA, bpf.NetOptions{Mode: mode, Include: []string{"bst-*"}})
				attach(b, n, mode)
				progs = ourPrograms(b, x)
			}
			st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			runTime := func() (time.Duration, uint64) {
				var d time.Duration
				var c uint64
				for _, p := range progs {
					st, err := p.Stats()
					if err != nil {
						b.Fatal(err)
					}
					d, c = d+st.Runtime, c+st.RunCount
				}
				return d, c
			}
			size := []int{64}
			d0, c0 := runTime()
			for b.Loop() {
				pingPong(b, cx, cy, size)
			}
			if d1, c1 := runTime(); c1 > c0 {
				b.ReportMetric(float64(d1-d0)/float64(c1-c0), "bpf-ns/packet")
			}
		})
	}
}

// ourPrograms returns the collector's programs attached to e, found the
// way an operator would: as TCX programs, or clsact filters by name.
func ourPrograms(tb testing.TB, e *vethEnd) []*ebpf.Program {
	tb.Helper()
	var ids []ebpf.ProgramID
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, _ := e.ns.nl.FilterList(e.link(), parent)
		for _, f := range fs {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, "bpfstatd_net_") {
				ids = append(ids, ebpf.ProgramID(bf.Id))
			}
		}
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		err := e.ns.do(func() error {
			res, err := link.QueryPrograms(link.QueryOptions{Target: e.index, Attach: at})
			if err == nil && len(res.Programs) > 0 {
				ids = append(ids, res.Programs[0].ID) // ours go first
			}
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	var progs []*ebpf.Program
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { p.Close() })
		progs = append(progs, p)
	}
	return progs
}

// TestNetManyLinks creates and deletes links in bursts: every link must be
// counted, and released, and the time it took is logged. A TCX attach or
// detach waits for an RCU grace period while it holds the RTNL lock (12 ms
// each on an idle machine here, far longer on a busy one): TCX links are
// attached at about 40 a second at best, and the TCX burst is smaller.
func TestNetManyLinks(t *testing.T) {
	const deadline = 10 * time.Second
	for _, tc := range []struct {
		mode  bpf.NetMode
		pairs int
	}{{bpf.NetTCX, 20}, {bpf.NetClsact, 150}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			ns := newTestNS(t)
			n := loadNet(t, ns, bpf.NetOptions{Mode: tc.mode, Include: []string{"bst-m*"}})
			attach(t, n, tc.mode)
			name := func(i int) string { return fmt.Sprintf("bst-m%da", i) }
			start := time.Now()
			for i := range tc.pairs {
				v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name(i)}, PeerName: fmt.Sprintf("bst-m%db", i)}
				if err := ns.nl.LinkAdd(v); err != nil {
					t.Fatal(err)
				}
			}
			made := time.Since(start)
			count := func() (live, gone int) {
				for _, s := range read(t, n) {
					if s.Gone {
						gone++
					} else {
						live++
					}
				}
				return live / 2, gone / 2
			}
			for live := 0; live < 2*tc.pairs; time.Sleep(10 * time.Millisecond) {
				if time.Since(start) > deadline {
					t.Fatalf("%d of %d links counted %v after creating them", live, 2*tc.pairs, time.Since(start))
				}
				live, _ = count()
			}
			t.Logf("%d links counted %v after the first was created (creating them took %v)", 2*tc.pairs, time.Since(start), made)

			start = time.Now()
			for i := range tc.pairs {
				if err := ns.nl.LinkDel(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name(i)}}); err != nil {
					t.Fatal(err)
				}
			}
			made = time.Since(start)
			total := 0
			for live := -1; live != 0 || total < 2*tc.pairs; time.Sleep(10 * time.Millisecond) {
				if time.Since(start) > deadline {
					t.Fatalf("%d links still counted, %d reported gone, %v after deleting them", live, total, time.Since(start))
				}
				var gone int
				live, gone = count()
				total += gone
			}
			t.Logf("%d links released %v after the first was deleted (deleting them took %v)", 2*tc.pairs, time.Since(start), made)
		})
	}
}

// TestNetTwoInstances runs two collectors of different instances on the
// same links, as two bpfstatd daemons on one host would: both count
// exactly, and releasing one leaves the other attached and counting.
func TestNetTwoInstances(t *testing.T) {
	for _, mode := range netModes {
		t.Run(mode.String(), func(t *testing.T) {
			nsA, nsB := newTestNS(t), newTestNS(t)
			a, b := newVeth(t, nsA, "bst-i0", nsB, "bst-j0", 9)
			ca, cb := a.listen(t), b.listen(t)
			only := []string{a.name}
			one := loadNet(t, nsA, bpf.NetOptions{Mode: mode, Include: only, Instance: "/run/bpfstatd-one.sock"})
			two := loadNet(t, nsA, bpf.NetOptions{Mode: mode, Include: only, Instance: "/run/bpfstatd-two.sock"})
			attach(t, one, mode)
			attach(t, two, mode)
			before := a.stats(t)

			pingPong(t, ca, cb, sizes(300))
			checkCounts(t, one, a, before)
			checkCounts(t, two, a, before)

			if err := one.Close(); err != nil {
				t.Fatal(err)
			}
			pingPong(t, ca, cb, sizes(300))
			checkCounts(t, two, a, before)
			for d := range bpf.NetDirection(2) {
				if s, _ := find(read(t, two), a.name, d); s.Packets != 600 {
					t.Errorf("%s: the remaining instance counted %d packets, want 600", d, s.Packets)
				}
			}
		})
	}
}

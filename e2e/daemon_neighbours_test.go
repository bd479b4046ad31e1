package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestDaemonNeighbours runs two bpfstatd instances in one network namespace,
// counting the same veth end on which the test has programs of its own: a
// TCX program per direction (returning TCX_NEXT) and a classic BPF filter
// per direction on a clsact qdisc (returning TC_ACT_OK). After P UDP
// datagrams each way, each daemon's packet and byte counts equal the
// kernel's link statistics exactly, and each foreign program counted every
// packet. SIGTERM to the first daemon detaches only its programs: the
// second daemon's and the foreign ones stay attached, and after P more
// datagrams each way the second daemon and the foreign programs still
// count exactly.
func TestDaemonNeighbours(t *testing.T) {
	requireE2E(t)
	const p = 300
	nsA, nsB := newTestNS(t), newTestNS(t)
	a, b := newVeth(t, nsA, "bstn-a", nsB, "bstn-b")
	foreign := attachForeign(t, a)

	dir, err := os.MkdirTemp("", "bpfst-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	base := a.stats(t)
	var exps [2]*exporter
	var ds [2]*daemon
	for i := range ds {
		exps[i] = startExporter(t, filepath.Join(dir, fmt.Sprintf("statsd%d.sock", i)))
		ds[i] = startDaemonWith(t, func(cmd *exec.Cmd) error { return nsA.do(cmd.Start) }, exps[i].output(),
			"--collectors", "net", "--interfaces", a.name, "--flush-interval", "200ms")
	}
	checkTCX(t, a, foreign, 2, "with both daemons")

	pingPong(t, a, b, p)
	checkNet(t, "both daemons", a, base, []*exporter{exps[0], exps[1]})
	foreign.check(t, a, base, 1)

	// The first daemon goes: the others' programs stay.
	if took, err := ds[0].terminate(t, 5*time.Second); err != nil {
		t.Fatalf("daemon 1 after SIGTERM: %v (after %v)", err, took)
	}
	checkTCX(t, a, foreign, 1, "after daemon 1 stopped")
	foreign.checkFilters(t, a)

	pingPong(t, a, b, p)
	checkNet(t, "daemon 2 alone", a, base, []*exporter{exps[1]})
	foreign.check(t, a, base, 2)
	if l := ds[1].drops(t); l.userLost() != 0 {
		t.Errorf("daemon 2's ledger counts losses: %s", l.nonZero())
	}
	if took, err := ds[1].terminate(t, 5*time.Second); err != nil {
		t.Errorf("daemon 2 after SIGTERM: %v (after %v)", err, took)
	}
	for dir, ps := range a.tcxPrograms(t) {
		if n := countName(ps, "net_"+dir); n != 0 {
			t.Errorf("%s: %d bpfstatd programs left after both daemons stopped: %v", dir, n, ps)
		}
		if !slices.Contains(ps, foreign.tcxIDs[dir]) {
			t.Errorf("%s: the foreign TCX program %d is gone after both daemons stopped", dir, foreign.tcxIDs[dir])
		}
	}
	foreign.checkFilters(t, a)
}

// pingPong sends p UDP datagrams of varied sizes from a to b, each answered
// by one back, and returns the payload bytes sent each way.
func pingPong(t *testing.T, a, b *vethEnd, p int) (sent uint64) {
	t.Helper()
	ca, cb := a.listen(t), b.listen(t)
	buf, rbuf := make([]byte, 2048), make([]byte, 2048)
	deadline := time.Now().Add(20 * time.Second)
	ca.SetReadDeadline(deadline)
	cb.SetReadDeadline(deadline)
	for i := range p {
		n := 1 + (i*37)%1400
		if _, err := ca.WriteToUDP(buf[:n], cb.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		if m, _, err := cb.ReadFromUDP(rbuf); err != nil || m != n {
			t.Fatalf("receive %d bytes: %d, %v", n, m, err)
		}
		if _, err := cb.WriteToUDP(buf[:n], ca.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		if m, _, err := ca.ReadFromUDP(rbuf); err != nil || m != n {
			t.Fatalf("receive %d bytes back: %d, %v", n, m, err)
		}
		sent += uint64(n)
	}
	return sent
}

// checkNet checks that each exporter's packets and bytes of end e equal
// the kernel's link statistics since base, exactly.
func checkNet(t *testing.T, what string, e *vethEnd, base netlink.LinkStatistics, exps []*exporter) {
	t.Helper()
	ls := e.stats(t)
	want := map[string][2]uint64{
		"ingress": {ls.RxPackets - base.RxPackets, ls.RxBytes - base.RxBytes},
		"egress":  {ls.TxPackets - base.TxPackets, ls.TxBytes - base.TxBytes},
	}
	for i, exp := range exps {
		exp.waitFor(t, 10*time.Second, func(f families) bool {
			for dir, w := range want {
				if f.sum("host_net_bytes", "iface", e.name, "direction", dir) < float64(w[1]) {
					return false
				}
			}
			return true
		})
		time.Sleep(500 * time.Millisecond) // anything extra has time to arrive
		f := exp.mustScrape(t)
		for dir, w := range want {
			gp, gb := f.sum("host_net_packets", "iface", e.name, "direction", dir), f.sum("host_net_bytes", "iface", e.name, "direction", dir)
			t.Logf("%s, exporter %d, %s %s: %v packets, %v bytes; link statistics %d packets, %d bytes", what, i, e.name, dir, gp, gb, w[0], w[1])
			if gp != float64(w[0]) || gb != float64(w[1]) {
				t.Errorf("%s, exporter %d, %s %s: %v packets, %v bytes; kernel link statistics %d packets, %d bytes",
					what, i, e.name, dir, gp, gb, w[0], w[1])
			}
		}
		if bad := exporterErrors(f); len(bad) != 0 {
			t.Errorf("statsd_exporter counted malformed input: %v", bad)
		}
	}
}

// foreignPrograms are the test's own TC programs on a link: a TCX program
// and a clsact filter per direction, each counting packets in its map.
type foreignPrograms struct {
	tcx, cls *ebpf.Map // per direction: 0 ingress, 1 egress
	tcxIDs   map[string]ebpf.ProgramID
	clsIDs   map[string]int
}

var directions = [2]string{"ingress", "egress"}

// attachForeign attaches the foreign programs to e, and detaches them
// when the test ends.
func attachForeign(t *testing.T, e *vethEnd) *foreignPrograms {
	t.Helper()
	f := &foreignPrograms{tcxIDs: map[string]ebpf.ProgramID{}, clsIDs: map[string]int{}}
	f.tcx, f.cls = counterMap(t), counterMap(t)
	tcxAttach := [2]ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress}
	for d, dir := range directions {
		prog := counterProgram(t, f.tcx, uint32(d), -1) // TCX_NEXT
		var l link.Link
		err := e.ns.do(func() (err error) {
			l, err = link.AttachTCX(link.TCXOptions{Interface: e.index, Program: prog, Attach: tcxAttach[d]})
			return err
		})
		if err != nil {
			t.Fatalf("attach the foreign TCX %s program: %v", dir, err)
		}
		t.Cleanup(func() { l.Close() })
		f.tcxIDs[dir] = progID(t, prog)
	}
	qdisc := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: e.index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT,
	}}
	if err := e.ns.nl.QdiscAdd(qdisc); err != nil {
		t.Fatalf("add clsact qdisc: %v", err)
	}
	t.Cleanup(func() { e.ns.nl.QdiscDel(qdisc) })
	parents := [2]uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS}
	for d, dir := range directions {
		prog := counterProgram(t, f.cls, uint32(d), 0) // TC_ACT_OK
		err := e.ns.nl.FilterAdd(&netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: e.index, Parent: parents[d], Handle: 1, Priority: 1, Protocol: unix.ETH_P_ALL,
			},
			Fd: prog.FD(), Name: "foreign_" + dir, DirectAction: true,
		})
		if err != nil {
			t.Fatalf("add the foreign %s filter: %v", dir, err)
		}
		f.clsIDs[dir] = int(progID(t, prog))
	}
	f.checkFilters(t, e)
	return f
}

// check checks that each foreign program counted every packet the link
// carried in its direction since base, which is rounds times P each way.
func (f *foreignPrograms) check(t *testing.T, e *vethEnd, base netlink.LinkStatistics, rounds int) {
	t.Helper()
	ls := e.stats(t)
	want := [2]uint64{ls.RxPackets - base.RxPackets, ls.TxPackets - base.TxPackets}
	for d, dir := range directions {
		for _, m := range []struct {
			name string
			m    *ebpf.Map
		}{{"TCX", f.tcx}, {"clsact filter", f.cls}} {
			var n uint64
			if err := m.m.Lookup(uint32(d), &n); err != nil {
				t.Fatal(err)
			}
			t.Logf("foreign %s %s counted %d packets after %d rounds; link statistics %d", m.name, dir, n, rounds, want[d])
			if n != want[d] {
				t.Errorf("foreign %s %s counted %d packets; kernel link statistics %d", m.name, dir, n, want[d])
			}
		}
	}
}

// checkFilters checks that the foreign filters are on the link, running
// the test's programs.
func (f *foreignPrograms) checkFilters(t *testing.T, e *vethEnd) {
	t.Helper()
	parents := [2]uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS}
	for d, dir := range directions {
		filters, err := e.ns.nl.FilterList(e.link(), parents[d])
		if err != nil {
			t.Fatalf("list %s filters: %v", dir, err)
		}
		found := false
		for _, fl := range filters {
			if bf, ok := fl.(*netlink.BpfFilter); ok && bf.Name == "foreign_"+dir && bf.Id == f.clsIDs[dir] {
				found = true
			}
		}
		if !found {
			t.Errorf("the foreign %s filter (program %d) is gone from %s", dir, f.clsIDs[dir], e.name)
		}
	}
}

func counterMap(t *testing.T) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 2})
	if err != nil {
		t.Fatalf("create a counter map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// counterProgram returns a TC program that adds one to m[key] and returns
// ret.
func counterProgram(t *testing.T, m *ebpf.Map, key uint32, ret int32) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, int64(key), asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, ret).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load a counter program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

func progID(t *testing.T, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("no program id")
	}
	return id
}

// tcxPrograms lists the programs attached to the end with TCX, by
// direction.
func (e *vethEnd) tcxPrograms(t *testing.T) map[string][]ebpf.ProgramID {
	t.Helper()
	out := map[string][]ebpf.ProgramID{}
	for d, at := range [2]ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		var r *link.QueryResult
		err := e.ns.do(func() (err error) {
			r, err = link.QueryPrograms(link.QueryOptions{Target: e.index, Attach: at})
			return err
		})
		if err != nil {
			t.Fatalf("query TCX %s programs: %v", directions[d], err)
		}
		for _, p := range r.Programs {
			out[directions[d]] = append(out[directions[d]], p.ID)
		}
	}
	return out
}

// countName counts the programs among ids whose name is name.
func countName(ids []ebpf.ProgramID, name string) int {
	n := 0
	for _, id := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // detached meanwhile
		}
		if info, err := p.Info(); err == nil && info.Name == name {
			n++
		}
		p.Close()
	}
	return n
}

// checkTCX checks that e's TCX programs in each direction include want of
// bpfstatd's and the foreign one; when says in which state of the test.
func checkTCX(t *testing.T, e *vethEnd, foreign *foreignPrograms, want int, when string) {
	t.Helper()
	progs := e.tcxPrograms(t)
	t.Logf("TCX programs on %s %s: %v", e.name, when, progs)
	for dir, ps := range progs {
		if n := countName(ps, "net_"+dir); n != want {
			t.Errorf("%s: %d bpfstatd programs attached %s, want %d: %v", dir, n, when, want, ps)
		}
		if !slices.Contains(ps, foreign.tcxIDs[dir]) {
			t.Errorf("%s: the foreign TCX program %d is gone %s: %v", dir, foreign.tcxIDs[dir], when, ps)
		}
	}
}

package bpf_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
	"golang.org/x/sys/unix"
)

// nsPeers is two network namespaces made by a test, A and B, joined by a
// veth pair: A is 10.x.y.1, B is 10.x.y.2. Deleting them on cleanup
// removes everything in them.
type nsPeers struct {
	name [2]string
	inum [2]uint32 // inode numbers, as in TCPRecord.NetNS
	addr [2]netip.Addr
}

// newNSPeers makes the namespaces; nothing else on the host sees them.
func newNSPeers(tb testing.TB) *nsPeers {
	tb.Helper()
	var b [2]byte
	rand.Read(b[:])
	p := &nsPeers{addr: [2]netip.Addr{netip.AddrFrom4([4]byte{10, b[0], b[1], 1}), netip.AddrFrom4([4]byte{10, b[0], b[1], 2})}}
	for i := range p.name {
		p.name[i], p.inum[i] = newNetns(tb)
	}
	ipCmd(tb, "-n", p.name[0], "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", p.name[1])
	for i, ns := range p.name {
		dev := "veth" + strconv.Itoa(i)
		ipCmd(tb, "-n", ns, "addr", "add", p.addr[i].String()+"/24", "dev", dev)
		ipCmd(tb, "-n", ns, "link", "set", dev, "up")
	}
	return p
}

// newNetns makes a network namespace with a unique name, with its
// loopback up, and deletes it on cleanup. It returns the name and the
// namespace's inode number.
func newNetns(tb testing.TB) (name string, inum uint32) {
	tb.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		kerneltest.Unavailable(tb, "no ip(8) to make network namespaces: "+err.Error())
	}
	var b [4]byte
	rand.Read(b[:])
	name = "bpfst-" + hex.EncodeToString(b[:])
	ipCmd(tb, "netns", "add", name)
	tb.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+name, &st); err != nil {
		tb.Fatal(err)
	}
	ipCmd(tb, "-n", name, "link", "set", "lo", "up")
	return name, uint32(st.Ino)
}

// ipCmd runs ip(8) with args and fails tb if it fails.
func ipCmd(tb testing.TB, args ...string) {
	tb.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// nft runs an nft(8) script in namespace ns and returns its output.
func nft(tb testing.TB, ns, script string) string {
	tb.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		kerneltest.Unavailable(tb, "no nft(8) to drop packets: "+err.Error())
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("nft in %s: %v: %s\n%s", ns, err, out, script)
	}
	return string(out)
}

// in runs f on a thread in namespace i; see [inNetns].
func (p *nsPeers) in(i int, f func() error) error { return inNetns(p.name[i], f) }

// inNetns runs f on a thread in the named namespace, so that the sockets
// f makes belong to it; they may be used from any goroutine afterwards.
// The thread is discarded after f.
func inNetns(name string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := os.Open("/run/netns/" + name)
		if err != nil {
			done <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("enter %s: %w", name, err)
			return
		}
		done <- f()
	}()
	return <-done
}

// tcpMIB reads the Tcp counters of namespace i's /proc/net/snmp.
func (p *nsPeers) tcpMIB(tb testing.TB, i int) map[string]int64 {
	tb.Helper()
	var data []byte
	err := p.in(i, func() (err error) {
		data, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	mib, err := parseSNMP(data, "Tcp")
	if err != nil {
		tb.Fatal(err)
	}
	return mib
}

// parseSNMP returns the counters of one protocol of a /proc/net/snmp
// file: a line of names, then a line of values, each after "Proto:".
func parseSNMP(data []byte, proto string) (map[string]int64, error) {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != proto+":" {
			continue
		}
		if names == nil {
			names = fields[1:]
			continue
		}
		mib := make(map[string]int64, len(names))
		for i, v := range fields[1:] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || i >= len(names) {
				return nil, fmt.Errorf("parse snmp %s: bad value %q", proto, v)
			}
			mib[names[i]] = n
		}
		return mib, nil
	}
	return nil, fmt.Errorf("parse snmp: no %s counters", proto)
}

// loadTCP loads the tcp collector with fresh shared maps.
func loadTCP(tb testing.TB) (*bpf.Shared, *bpf.TCP) {
	tb.Helper()
	return loadCollector(tb, bpf.RingOptions{}, bpf.LoadTCP)
}

// tcpTally is what the tcp records of a test's namespaces add up to.
type tcpTally struct {
	mu      sync.Mutex
	events  map[uint32]map[bpf.TCPEvent]int64 // by namespace
	resent  map[uint32]int64                  // segments of retransmits sent
	failed  map[int32]int64                   // retransmits not sent, by code
	records []bpf.TCPRecord
}

func (c *tcpTally) add(r *bpf.TCPRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.events[r.NetNS] == nil {
		c.events[r.NetNS] = make(map[bpf.TCPEvent]int64)
	}
	c.events[r.NetNS][r.Event]++
	if r.Event == bpf.TCPRetransmit {
		if r.Code == 0 {
			c.resent[r.NetNS] += int64(r.Segs)
		} else {
			c.failed[r.Code]++
		}
	}
	c.records = append(c.records, *r)
}

func (c *tcpTally) count(ns uint32, e bpf.TCPEvent) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events[ns][e]
}

func (c *tcpTally) resentSegs(ns ...uint32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, ns := range ns {
		n += c.resent[ns]
	}
	return n
}

// TestTCP opens K connections from namespace A to B, one over IPv6
// loopback in A, one connect to a
// closed port, one connection aborted with SO_LINGER 0, and one transfer
// through an nftables rule in B dropping 3 of every 10 of A's data
// segments. The records of the two namespaces must match the kernel's own
// counters in each namespace's /proc/net/snmp (TcpActiveOpens = active
// opens + failed connects, TcpPassiveOpens, TcpAttemptFails, TcpOutRsts,
// TcpRetransSegs = the segments of the retransmits sent) and what the test
// did.
func TestTCP(t *testing.T) {
	sh, c := loadTCP(t)
	p := newNSPeers(t)
	const port, closedPort, k, transfer = 8080, 8081, 20, 1 << 20
	// Drop data segments only, so that handshakes complete; a short
	// minimum RTO keeps recovery within the test's time.
	nft(t, p.name[1], `table inet bpfst {
		chain in {
			type filter hook input priority 0; policy accept;
			tcp dport `+strconv.Itoa(port)+` meta length > 200 numgen inc mod 10 < 3 counter drop
		}
	}`)
	ipCmd(t, "-n", p.name[0], "route", "replace", netip.PrefixFrom(p.addr[0], 24).Masked().String(),
		"dev", "veth0", "rto_min", "20ms")

	tally := &tcpTally{events: map[uint32]map[bpf.TCPEvent]int64{}, resent: map[uint32]int64{}, failed: map[int32]int64{}}
	var rec bpf.TCPRecord
	stop := drainAll(t, sh, func(r *bpf.Record) {
		if r.Kind == bpf.KindTCP && r.TCP(&rec) == nil && (rec.NetNS == p.inum[0] || rec.NetNS == p.inum[1]) {
			tally.add(&rec)
		}
	})
	if err := c.SetSampleRate(0); err == nil {
		t.Error("SetSampleRate(0) accepted")
	}
	if err := c.SetSampleRate(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Attach(); err != nil {
		t.Fatal(err)
	}
	before := [2]map[string]int64{p.tcpMIB(t, 0), p.tcpMIB(t, 1)}

	var ln net.Listener
	if err := p.in(1, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(p.addr[1], port).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server := netip.AddrPortFrom(p.addr[1], port).String()
	dial := func(addr string) (conn net.Conn, err error) {
		err = p.in(0, func() error {
			conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
			return err
		})
		return conn, err
	}
	acceptOn := func(ln net.Listener) *net.TCPConn {
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return conn.(*net.TCPConn)
	}
	accept := func() *net.TCPConn { return acceptOn(ln) }

	// K plain connections, closed by the client first, then the server
	// after reading the client's FIN.
	for range k {
		conn, err := dial(server)
		if err != nil {
			t.Fatal(err)
		}
		sc := accept()
		conn.Close()
		if _, err := io.Copy(io.Discard, sc); err != nil {
			t.Fatal(err)
		}
		sc.Close()
	}

	// One IPv6 connection over A's loopback.
	var ln6 net.Listener
	if err := p.in(0, func() (err error) {
		ln6, err = net.Listen("tcp6", "[::1]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln6.Close()
	conn6, err := dial(ln6.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc6 := acceptOn(ln6)
	loop6 := netip.MustParseAddrPort(conn6.LocalAddr().String())
	conn6.Close()
	io.Copy(io.Discard, sc6)
	sc6.Close()

	// A connect to a closed port: B answers with an RST, which A accepts,
	// and the connect fails.
	if _, err := dial(netip.AddrPortFrom(p.addr[1], closedPort).String()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to closed port: %v, want connection refused", err)
	}

	// An abort: A closes with SO_LINGER 0, sending an RST that B accepts.
	conn, err := dial(server)
	if err != nil {
		t.Fatal(err)
	}
	sc := accept()
	abort := netip.MustParseAddrPort(conn.LocalAddr().String())
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after peer's abort: %v, want connection reset", err)
	}
	sc.Close()

	// A transfer through the lossy rule: A's retransmits.
	conn, err = dial(server)
	if err != nil {
		t.Fatal(err)
	}
	sc = accept()
	lossy := netip.MustParseAddrPort(conn.LocalAddr().String())
	copied := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, sc)
		sc.Close()
		copied <- n
	}()
	start := time.Now()
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(make([]byte, transfer)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if n := <-copied; n != transfer {
		t.Fatalf("transferred %d bytes, want %d", n, transfer)
	}
	t.Logf("lossy transfer of %d bytes took %v", transfer, time.Since(start))

	// Retransmits of the transfer may still be in flight, and their
	// records on the way on a busy host: wait until the namespaces'
	// counters and the records agree, or give up after 10 s.
	delta := func(i int, name string) int64 { return p.tcpMIB(t, i)[name] - before[i][name] }
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if tally.resentSegs(p.inum[:]...) == delta(0, "RetransSegs")+delta(1, "RetransSegs") {
			break
		}
	}
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	stop()
	misses, err := c.Misses()
	if err != nil {
		t.Fatal(err)
	}

	a, b := p.inum[0], p.inum[1]
	checks := []struct {
		what      string
		got, want int64
	}{
		{"A active opens + failed connects vs A TcpActiveOpens", tally.count(a, bpf.TCPActiveOpen) + tally.count(a, bpf.TCPFailedConnect), delta(0, "ActiveOpens")},
		{"A active opens vs connections made", tally.count(a, bpf.TCPActiveOpen), k + 3},
		{"A passive opens vs A TcpPassiveOpens", tally.count(a, bpf.TCPPassiveOpen), delta(0, "PassiveOpens")},
		{"A passive opens vs IPv6 connections accepted", tally.count(a, bpf.TCPPassiveOpen), 1},
		{"A failed connects vs A TcpAttemptFails", tally.count(a, bpf.TCPFailedConnect), delta(0, "AttemptFails")},
		{"A failed connects vs connects refused", tally.count(a, bpf.TCPFailedConnect), 1},
		{"B passive opens vs B TcpPassiveOpens", tally.count(b, bpf.TCPPassiveOpen), delta(1, "PassiveOpens")},
		{"B passive opens vs connections accepted", tally.count(b, bpf.TCPPassiveOpen), k + 2},
		{"A resets sent vs A TcpOutRsts", tally.count(a, bpf.TCPSendReset), delta(0, "OutRsts")},
		{"A resets sent vs aborts", tally.count(a, bpf.TCPSendReset), 1},
		{"B resets sent vs B TcpOutRsts", tally.count(b, bpf.TCPSendReset), delta(1, "OutRsts")},
		{"B resets sent vs connects to a closed port", tally.count(b, bpf.TCPSendReset), 1},
		{"A resets received (the refusal)", tally.count(a, bpf.TCPReceiveReset), 1},
		{"B resets received (the abort)", tally.count(b, bpf.TCPReceiveReset), 1},
		{"A+B segments retransmitted vs A+B TcpRetransSegs", tally.resentSegs(a, b), delta(0, "RetransSegs") + delta(1, "RetransSegs")},
		{"B active opens (none made)", tally.count(b, bpf.TCPActiveOpen), 0},
	}
	for _, c := range checks {
		t.Logf("%-55s %6d %6d", c.what, c.got, c.want)
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.what, c.got, c.want)
		}
	}
	dropped := nft(t, p.name[1], "list chain inet bpfst in")
	t.Logf("retransmit records: %d in A, %d in B; not sent, by code: %v; programs not run (recursion): %d; rule: %s",
		tally.count(a, bpf.TCPRetransmit), tally.count(b, bpf.TCPRetransmit), tally.failed, misses,
		strings.Join(strings.Fields(dropped[strings.Index(dropped, "counter"):]), " "))
	if tally.resentSegs(a, b) == 0 {
		t.Error("no retransmits: the rule dropped nothing?")
	}
	checkTCPRecords(t, p, tally.records, tcpSockets{closedPort: closedPort, abort: abort, lossy: lossy, loop6: loop6})
	for _, prog := range []bpf.Program{bpf.ProgTCPRetransmit, bpf.ProgTCPSendReset, bpf.ProgTCPReceiveReset, bpf.ProgTCPState} {
		l, err := sh.Ledger(prog)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s ledger %+v", prog, l)
		if !l.Balanced() || l.Lost() != 0 {
			t.Errorf("%s ledger %+v: want balanced, nothing lost", prog, l)
		}
	}
}

// tcpSockets are the test's connections with their own checks.
type tcpSockets struct {
	closedPort   uint16         // of B, refusing A's connect
	abort, lossy netip.AddrPort // A's ends of the aborted and lossy connections
	loop6        netip.AddrPort // the client end of the IPv6 loopback connection
}

// checkTCPRecords checks the fields of the records: addresses, ports and
// states as the test made them, and the connecting task's name.
func checkTCPRecords(t *testing.T, p *nsPeers, records []bpf.TCPRecord, socks tcpSockets) {
	t.Helper()
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	comm = bytes.TrimSpace(comm)
	a, b := p.inum[0], p.inum[1]
	for _, r := range records {
		var errs []string
		want := func(ok bool, what string) {
			if !ok {
				errs = append(errs, what)
			}
		}
		if r.Local.Addr().Is6() {
			want(r.Family == unix.AF_INET6 && r.NetNS == a && (r.Local == socks.loop6 || r.Remote == socks.loop6) &&
				r.Local.Addr() == netip.IPv6Loopback() && r.Remote.Addr() == netip.IPv6Loopback(), "IPv6 loopback in A")
			want(r.Event == bpf.TCPActiveOpen || r.Event == bpf.TCPPassiveOpen, "an open")
			if errs != nil {
				t.Errorf("%s record %+v: want %s", r.Event, r, strings.Join(errs, ", "))
			}
			continue
		}
		want(r.Family == unix.AF_INET, "family AF_INET")
		switch r.Event {
		case bpf.TCPActiveOpen, bpf.TCPFailedConnect:
			want(r.NetNS == a && r.Local.Addr() == p.addr[0] && r.Remote.Addr() == p.addr[1], "A to B")
			want(r.OldState == bpf.TCPSynSent, "from SYN_SENT")
			want(string(r.Name()) == string(comm), "comm "+string(comm))
			if r.Event == bpf.TCPActiveOpen {
				want(r.State == bpf.TCPEstablished, "to ESTABLISHED")
			} else {
				want(r.State == bpf.TCPClose && r.Remote.Port() == socks.closedPort, "to CLOSE, to the closed port")
			}
		case bpf.TCPPassiveOpen:
			want(r.NetNS == b && r.Local.Addr() == p.addr[1] && r.Remote.Addr() == p.addr[0], "B from A")
			want(r.OldState == bpf.TCPSynRecv && r.State == bpf.TCPEstablished, "SYN_RECV to ESTABLISHED")
			want(len(r.Name()) == 0, "no comm")
		case bpf.TCPSendReset:
			if r.NetNS == b { // no socket: the addresses come from the SYN
				want(r.State == 0 && r.Local == netip.AddrPortFrom(p.addr[1], socks.closedPort) && r.Remote.Addr() == p.addr[0],
					"no socket, B:closed port to A")
			} else {
				want(r.Local == socks.abort && r.Remote.Addr() == p.addr[1], "from the aborted socket")
				want(string(r.Name()) == string(comm), "comm "+string(comm))
			}
		case bpf.TCPReceiveReset:
			if r.NetNS == a {
				want(r.Remote.Port() == socks.closedPort, "from the closed port")
			} else {
				want(r.Remote == socks.abort, "from the aborted socket")
			}
		case bpf.TCPRetransmit:
			want(r.NetNS == a && r.Local == socks.lossy && r.Remote.Addr() == p.addr[1], "from the lossy connection")
			want(r.Segs >= 1, "segments")
		}
		if errs != nil {
			t.Errorf("%s record %+v: want %s", r.Event, r, strings.Join(errs, ", "))
		}
	}
}

// tcpSample lays out a tcp record as the kernel does.
func tcpSample(event bpf.TCPEvent, local, remote netip.AddrPort, comm string) []byte {
	b := make([]byte, bpf.TCPRecordSize)
	le := binary.LittleEndian
	le.PutUint32(b, uint32(bpf.KindTCP))
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[8:], 42)
	body := b[bpf.HeaderSize:]
	body[0] = byte(event)
	body[1] = unix.AF_INET6
	if local.Addr().Is4() {
		body[1] = unix.AF_INET
	}
	body[2], body[3] = byte(bpf.TCPSynSent), byte(bpf.TCPEstablished)
	le.PutUint16(body[4:], local.Port())
	le.PutUint16(body[6:], remote.Port())
	l, r := local.Addr().AsSlice(), remote.Addr().AsSlice()
	copy(body[8:], l)
	copy(body[24:], r)
	le.PutUint32(body[40:], 4026531840)
	le.PutUint32(body[44:], uint32(0xfffffff0)) // -16, EBUSY
	le.PutUint32(body[48:], 3)
	copy(body[56:], comm)
	return b
}

func TestDecodeTCP(t *testing.T) {
	for _, tc := range []struct{ local, remote string }{
		{"10.1.2.3:40000", "192.168.0.1:443"},
		{"[2001:db8::1]:40000", "[fe80::2]:22"},
	} {
		local, remote := netip.MustParseAddrPort(tc.local), netip.MustParseAddrPort(tc.remote)
		var r bpf.Record
		if err := bpf.DecodeRecord(tcpSample(bpf.TCPActiveOpen, local, remote, "curl"), &r); err != nil {
			t.Fatal(err)
		}
		var got bpf.TCPRecord
		if err := r.TCP(&got); err != nil {
			t.Fatal(err)
		}
		if got.Event != bpf.TCPActiveOpen || got.Local != local || got.Remote != remote || got.NetNS != 4026531840 ||
			got.Code != -16 || got.Segs != 3 || string(got.Name()) != "curl" || got.TimeNS != 42 ||
			got.OldState != bpf.TCPSynSent || got.State != bpf.TCPEstablished {
			t.Errorf("decoded %+v", got)
		}
		if got.Event.String() != "active_open" || got.OldState.String() != "SYN_SENT" {
			t.Errorf("names %s %s", got.Event, got.OldState)
		}
		var o bpf.OOMRecord
		if err := r.OOM(&o); !errors.Is(err, bpf.ErrRecord) {
			t.Errorf("tcp record decoded as oom: %v", err)
		}
	}
}

package bpf_test

import (
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
)

// loadSKB loads the skb collector with fresh shared maps.
func loadSKB(tb testing.TB) *bpf.SKB {
	tb.Helper()
	_, c := loadCollector(tb, bpf.RingOptions{}, bpf.LoadSKB)
	return c
}

// reasonOf finds a drop reason by name.
func reasonOf(tb testing.TB, k *bpf.SKB, name string) uint32 {
	tb.Helper()
	for r := range uint32(bpf.SKBDropSlots) {
		if k.ReasonName(r) == name {
			return r
		}
	}
	tb.Fatalf("no drop reason named %s", name)
	return 0
}

var nftPackets = regexp.MustCompile(`packets (\d+) bytes`)

// TestSKBDropNetfilter sends N UDP datagrams over loopback in a namespace
// of its own, where an nftables rule counts and drops them. The drops
// counted under NETFILTER_DROP in that window must be at least the rule's
// counter, and at most that plus the NETFILTER_DROP drops of the rest of
// the host, measured in equally long windows before and after without the
// test's traffic.
func TestSKBDropNetfilter(t *testing.T) {
	k := loadSKB(t)
	ns, _ := newNetns(t)
	const port, n, window = 9999, 1000, 500 * time.Millisecond
	nft(t, ns, `table inet bpfst {
		counter dropped {}
		chain in {
			type filter hook input priority 0; policy accept;
			udp dport `+strconv.Itoa(port)+` counter name dropped drop
		}
	}`)
	ruleCount := func() uint64 {
		m := nftPackets.FindStringSubmatch(nft(t, ns, "list counter inet bpfst dropped"))
		if m == nil {
			t.Fatal("no packet count in nft's counter")
		}
		v, _ := strconv.ParseUint(m[1], 10, 64)
		return v
	}
	if err := k.Attach(); err != nil {
		t.Fatal(err)
	}
	reason := reasonOf(t, k, "NETFILTER_DROP")
	var d bpf.SKBDrops
	dropped := func() uint64 {
		if err := k.Read(&d); err != nil {
			t.Fatal(err)
		}
		return d.ByReason[reason]
	}
	quiet := func() uint64 {
		start := dropped()
		time.Sleep(window)
		return dropped() - start
	}

	before := quiet()
	var conn net.Conn
	if err := inNetns(ns, func() (err error) {
		conn, err = net.Dial("udp4", netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	counter0 := ruleCount()
	start, begin := dropped(), time.Now()
	msg := make([]byte, 64)
	for range n {
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(window - time.Since(begin))
	got := dropped() - start
	rule := ruleCount() - counter0
	after := quiet()
	noise := max(before, after)
	t.Logf("NETFILTER_DROP (reason %d): %d in %v with the rule's %d drops (%d sent); %d before and %d after without",
		reason, got, window, rule, n, before, after)
	if rule == 0 || rule > n {
		t.Errorf("the rule dropped %d of %d datagrams", rule, n)
	}
	if got < rule || got > rule+noise {
		t.Errorf("NETFILTER_DROP counted %d, want %d to %d", got, rule, rule+noise)
	}
	if err := k.Detach(); err != nil {
		t.Fatal(err)
	}
	var total uint64
	for r, v := range d.ByReason {
		if v != 0 {
			t.Logf("reason %3d %-28s %d", r, k.ReasonName(uint32(r)), v)
		}
		total += v
	}
	t.Logf("out of range %d; total %d", d.OutOfRange, total+d.OutOfRange)
}

// TestSKBReasonNames checks the names read from the kernel's BTF against
// the kernel's own table in the kfree_skb tracepoint's print format, when
// tracefs is mounted, and the names of values the kernel does not name.
func TestSKBReasonNames(t *testing.T) {
	k := loadSKB(t)
	for r, want := range map[uint32]string{
		bpf.SKBDropSlots - 1: "REASON_255",
		bpf.SKBDropSlots:     "OUT_OF_RANGE",
		1<<16 | 1:            "OUT_OF_RANGE",
	} {
		if got := k.ReasonName(r); got != want {
			t.Errorf("ReasonName(%d) = %q, want %q", r, got, want)
		}
	}
	reasonOf(t, k, "NOT_SPECIFIED")
	reasonOf(t, k, "NETFILTER_DROP")

	const format = "/sys/kernel/tracing/events/skb/kfree_skb/format"
	data, err := os.ReadFile(format)
	if err != nil {
		t.Logf("no kernel table to compare with: %v", err)
		return
	}
	table := regexp.MustCompile(`\{ (\d+), "([A-Z0-9_]+)" \}`).FindAllSubmatch(data, -1)
	for _, m := range table {
		r, _ := strconv.ParseUint(string(m[1]), 10, 32)
		if got := k.ReasonName(uint32(r)); r < bpf.SKBDropSlots && got != string(m[2]) {
			t.Errorf("ReasonName(%d) = %q, the kernel says %q", r, got, m[2])
		}
	}
	if len(table) < 3 {
		t.Errorf("%s has %d names", format, len(table))
	}
	t.Logf("%d names agree with %s", len(table), format)
}

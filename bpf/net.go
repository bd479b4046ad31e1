package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetDirection is the way a packet crossed a link. The values mirror enum
// net_direction in net.c.
type NetDirection uint8

// Directions of a link's traffic.
const (
	NetIngress NetDirection = iota // received by the link
	NetEgress                      // transmitted by the link
)

// String returns "ingress" or "egress", as used in the direction tag.
func (d NetDirection) String() string {
	if d == NetIngress {
		return "ingress"
	}
	return "egress"
}

// NetMode says how the net collector's programs are attached to links.
type NetMode uint8

// Attach modes.
const (
	// NetAuto uses TCX links where the kernel has them (Linux 6.6 and
	// later) and clsact filters otherwise.
	NetAuto NetMode = iota
	// NetTCX attaches TCX links, at the head of each link's chain.
	NetTCX
	// NetClsact adds a BPF filter per direction to each link's clsact
	// qdisc, creating the qdisc where the link has none.
	NetClsact
)

// String returns "auto", "tcx" or "clsact".
func (m NetMode) String() string {
	switch m {
	case NetTCX:
		return "tcx"
	case NetClsact:
		return "clsact"
	}
	return "auto"
}

// DefaultNetMaxLinks is the number of links counted at once when
// [NetOptions.MaxLinks] is zero.
const DefaultNetMaxLinks = 4096

// NetOptions choose the links the net collector counts and how it attaches
// to them. The zero value counts every link, with TCX where the kernel has
// it.
type NetOptions struct {
	// Include, if not empty, limits counting to links whose name matches
	// one of these patterns (the syntax of [path.Match], such as "eth*").
	Include []string
	// Exclude names links not to count, even if they match Include.
	Exclude []string
	// Mode chooses TCX links or clsact filters; zero means [NetAuto].
	Mode NetMode
	// MaxLinks bounds how many links are counted at once; zero means
	// [DefaultNetMaxLinks]. A link past it is not counted, and logged.
	MaxLinks int
	// FilterPriority is the priority of the clsact filters. Zero chooses,
	// per link and direction, the lowest priority that no other filter
	// holds, so that bpfstatd's filter runs first (a filter before it that
	// ends the chain hides packets from it). A link on which another
	// filter holds a priority given here is not counted, and logged.
	FilterPriority uint16
	// Instance names this bpfstatd among others on the host, such as by
	// its admin socket's path. Its clsact filters carry a name made from
	// it, so that an attach replaces only filters an earlier run of the
	// same instance left behind, never another running instance's. TCX
	// links need no name: each is released with the process that holds
	// it. Empty names the one unnamed instance.
	Instance string
	// Logger receives the failures to attach to or release single links,
	// which do not stop the others; nil means [slog.Default].
	Logger *slog.Logger
}

// Check reports the first invalid option, such as a malformed pattern,
// without loading anything.
func (o NetOptions) Check() error {
	_, err := o.withDefaults()
	return err
}

func (o NetOptions) withDefaults() (NetOptions, error) {
	for _, p := range slices.Concat(o.Include, o.Exclude) {
		if _, err := path.Match(p, ""); err != nil {
			return o, fmt.Errorf("check interface pattern %q: %w", p, err)
		}
	}
	if o.Mode > NetClsact {
		return o, fmt.Errorf("check attach mode: unknown mode %d", o.Mode)
	}
	if o.MaxLinks < 0 {
		return o, fmt.Errorf("check link limit: %d is negative", o.MaxLinks)
	}
	if o.MaxLinks == 0 {
		o.MaxLinks = DefaultNetMaxLinks
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// counts reports whether a link with this name is to be counted.
func (o *NetOptions) counts(name string) bool {
	match := func(patterns []string) bool {
		return slices.ContainsFunc(patterns, func(p string) bool {
			ok, _ := path.Match(p, name) // patterns checked by withDefaults
			return ok
		})
	}
	return (len(o.Include) == 0 || match(o.Include)) && !match(o.Exclude)
}

// NetStats is what one link carried in one direction since it was first
// counted under its name.
type NetStats struct {
	Interface string // the link's name
	Index     int    // its ifindex in the host's network namespace
	Direction NetDirection
	Packets   uint64 // packets, GSO/GRO aggregates counted once
	Bytes     uint64 // bytes from the MAC header on, without the FCS
	// Gone marks the last count of a link that vanished, was renamed or
	// stopped matching the options; it is reported once.
	Gone bool
}

// Net is the net collector's kernel side: a TC program per direction,
// attached to every link of the host's network namespace (the one LoadNet
// is called in), counts packets and bytes per link and direction in a
// per-CPU hash. A link watcher attaches links that appear within
// milliseconds and releases links that vanish.
//
// The daemon ships, from the deltas of [Net.Read] between intervals:
//
//	host.net.packets  counter  tags iface:<name>, direction:ingress|egress
//	host.net.bytes    counter  tags iface:<name>, direction:ingress|egress
//
// Counts are taken where TC sees a packet: on ingress after the driver
// counted it, on egress before the qdisc. On a veth they equal the link's
// own statistics exactly; a physical NIC counts frames on the wire where TC
// sees a GSO or GRO aggregate once, and counts the frames it drops itself.
//
// In the ledger, [ProgNetIngress] and [ProgNetEgress] see every packet and
// emit those added to a link's counters (all but a link's last packets
// while it is being released).
//
// Only bpfstatd's own links, filters and qdiscs are ever changed: TCX
// programs go first in a link's chain and return TCX_NEXT; clsact filters
// go first where they can, at a priority no other filter holds, with their
// own handle and name, and return TC_ACT_UNSPEC; a clsact qdisc is created
// only where none is, and removed only when bpfstatd created it and no
// filter is left on it.
//
// Attach, Detach and Close are called from one goroutine; Read may be
// called from any goroutine, concurrently with them and with the watcher.
type Net struct {
	objs    netObjects
	opts    NetOptions
	ns      netns.NsHandle // the host's network namespace
	nl      *netlink.Handle
	progIDs [2]ebpf.ProgramID
	// filterNames name this instance's clsact filters, per direction.
	filterNames [2]string
	zero        []netNetCounters // one per possible CPU
	watcher     *netWatcher      // while attached

	mu     sync.Mutex
	mode   NetMode          // resolved on the first attach
	links  map[int]*netLink // by ifindex
	gone   []NetStats
	perCPU []netNetCounters
	closed bool
}

var _ Collector = (*Net)(nil)

// netLink is one counted link.
type netLink struct {
	name  string
	index int
	// base holds the counts from before the link took its name, which
	// Read subtracts.
	base [2]netNetCounters
	// TCX mode: the attached links, one per direction.
	tcx [2]link.Link
	// clsact mode: whether the filters are on the link, and whether
	// bpfstatd created its clsact qdisc.
	filters, ownQdisc bool
}

func (l *netLink) attached() bool { return l.tcx[0] != nil || l.filters }

// LoadNet loads the net collector's programs, writing to s's ledger. The
// network namespace of the calling thread is the one whose links are
// counted.
func LoadNet(s *Shared, opts NetOptions) (*Net, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("load net collector: %w", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("load net collector: %w", err)
	}
	spec, err := loadNet()
	if err != nil {
		return nil, err
	}
	spec.Maps["net_counters"].MaxEntries = uint32(2 * opts.MaxLinks)
	n := &Net{opts: opts, mode: opts.Mode, filterNames: netFilterNames(opts.Instance), links: make(map[int]*netLink), zero: make([]netNetCounters, ncpu)}
	if err := s.load("net", spec, &n.objs); err != nil {
		return nil, err
	}
	if err := n.init(); err != nil {
		return nil, errors.Join(fmt.Errorf("load net collector: %w", err), n.release())
	}
	return n, nil
}

// init opens the host's network namespace and a netlink handle in it, and
// notes the programs' ids, by which clsact filters are told apart.
func (n *Net) init() error {
	n.ns = netns.None()
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	n.ns = ns
	// A handle in the calling thread's namespace, which is ns: entering a
	// namespace, even one's own, would need CAP_SYS_ADMIN.
	if n.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	for d, p := range n.programs() {
		info, err := p.Info()
		if err != nil {
			return fmt.Errorf("read program info: %w", err)
		}
		id, _ := info.ID()
		n.progIDs[d] = id
	}
	return nil
}

func (n *Net) programs() [2]*ebpf.Program {
	return [2]*ebpf.Program{n.objs.NetIngress, n.objs.NetEgress}
}

// Name returns "net".
func (n *Net) Name() string { return "net" }

// Mode returns how links are attached: the options' mode, or once a link
// has been attached in [NetAuto] mode, the mode that worked.
func (n *Net) Mode() NetMode {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mode
}

// Attach attaches the programs to every link that the options select and
// starts the link watcher. It fails if the watcher cannot start or the
// chosen mode is not supported; a link that cannot be attached is logged
// and left out. Attaching again while attached does nothing.
func (n *Net) Attach() error {
	if n.watcher != nil {
		return nil
	}
	if n.isClosed() {
		return fmt.Errorf("attach net collector: %w", os.ErrClosed)
	}
	w, err := n.watch()
	if err != nil {
		return fmt.Errorf("attach net collector: %w", err)
	}
	n.watcher = w
	return nil
}

// Detach stops the link watcher and detaches the programs from every link.
// What they counted stays readable.
func (n *Net) Detach() error {
	if n.watcher != nil {
		n.watcher.stop()
		n.watcher = nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for _, l := range n.sorted() {
		if err := n.detachLink(l, false); err != nil {
			errs = append(errs, fmt.Errorf("detach net collector from %s: %w", l.name, err))
		}
	}
	return errors.Join(errs...)
}

// Close detaches the programs and releases them.
func (n *Net) Close() error {
	err := n.Detach()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return err
	}
	n.closed = true
	return errors.Join(err, n.release())
}

func (n *Net) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// release frees what LoadNet opened.
func (n *Net) release() error {
	if n.nl != nil {
		n.nl.Close()
	}
	err := n.objs.Close()
	if n.ns.IsOpen() {
		err = errors.Join(err, n.ns.Close())
	}
	return err
}

// Read returns the counts of every counted link, one [NetStats] per link
// and direction ordered by ifindex, followed once by the last counts of
// links released since the previous Read. The counts are cumulative: the
// caller ships the differences between reads.
func (n *Net) Read() ([]NetStats, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("read net counters: %w", os.ErrClosed)
	}
	links := n.sorted()
	stats := make([]NetStats, 0, 2*len(links)+len(n.gone))
	for _, l := range links {
		for d := range NetDirection(2) {
			c, err := n.lookup(l.index, d)
			if err != nil {
				return nil, err
			}
			stats = append(stats, NetStats{
				Interface: l.name, Index: l.index, Direction: d,
				Packets: c.Packets - l.base[d].Packets, Bytes: c.Bytes - l.base[d].Bytes,
			})
		}
	}
	stats = append(stats, n.gone...)
	n.gone = n.gone[:0]
	return stats, nil
}

// sorted returns the counted links by ifindex. n.mu is held.
func (n *Net) sorted() []*netLink {
	links := make([]*netLink, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	slices.SortFunc(links, func(a, b *netLink) int { return a.index - b.index })
	return links
}

// lookup sums one link's counters for d over CPUs. n.mu is held.
func (n *Net) lookup(index int, d NetDirection) (netNetCounters, error) {
	var sum netNetCounters
	key := netNetKey{Ifindex: uint32(index), Dir: uint32(d)}
	if err := n.objs.NetCounters.Lookup(&key, &n.perCPU); err != nil {
		return sum, fmt.Errorf("read net counters of link %d: %w", index, err)
	}
	for _, c := range n.perCPU {
		sum.Packets += c.Packets
		sum.Bytes += c.Bytes
	}
	return sum, nil
}

// createCounters creates a link's counters, keeping any it has. n.mu is
// held.
func (n *Net) createCounters(index int) error {
	for d := range uint32(2) {
		key := netNetKey{Ifindex: uint32(index), Dir: d}
		err := n.objs.NetCounters.Update(&key, n.zero, ebpf.UpdateNoExist)
		if errors.Is(err, unix.E2BIG) {
			return fmt.Errorf("create counters: more than %d links", n.opts.MaxLinks)
		}
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("create counters: %w", err)
		}
	}
	return nil
}

// forget reports a link's last counts as gone and deletes its counters.
// n.mu is held.
func (n *Net) forget(l *netLink) error {
	var errs []error
	for d := range NetDirection(2) {
		c, err := n.lookup(l.index, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n.gone = append(n.gone, NetStats{
			Interface: l.name, Index: l.index, Direction: d, Gone: true,
			Packets: c.Packets - l.base[d].Packets, Bytes: c.Bytes - l.base[d].Bytes,
		})
		key := netNetKey{Ifindex: uint32(l.index), Dir: uint32(d)}
		if err := n.objs.NetCounters.Delete(&key); err != nil {
			errs = append(errs, fmt.Errorf("delete net counters of link %d: %w", l.index, err))
		}
	}
	delete(n.links, l.index)
	return errors.Join(errs...)
}

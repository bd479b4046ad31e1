package bpf

import (
	"errors"
	"fmt"
	"hash/fnv"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The net collector's clsact filters: a handle at their own priority, and
// a name per direction (see netFilterNames) by which they are told apart
// from others' filters.
const netFilterHandle = 0xbfd

var (
	netFilterParents = [2]uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS}
	netTCXAttach     = [2]ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress}
)

// netWatcher is the goroutine that keeps the counted links in step with
// the host's links, from a netlink subscription to link changes. Its
// thread stays in the host's network namespace, where a TCX attach looks
// up the ifindex.
type netWatcher struct {
	quit, done chan struct{}
}

// stop ends the watcher and waits for it.
func (w *netWatcher) stop() {
	close(w.quit)
	<-w.done
}

// watch starts a watcher and returns once it has attached the links there
// are.
func (n *Net) watch() (*netWatcher, error) {
	w := &netWatcher{quit: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go n.run(w, ready)
	if err := <-ready; err != nil {
		<-w.done
		return nil, err
	}
	return w, nil
}

// run is the watcher's goroutine.
func (n *Net) run(w *netWatcher, ready chan<- error) {
	defer close(w.done)
	// Never unlocked: the thread ends with the goroutine instead of going
	// back to the runtime in another namespace.
	runtime.LockOSThread()
	if err := enter(n.ns); err != nil {
		ready <- err
		return
	}
	sub, err := n.subscribe()
	if err != nil {
		ready <- err
		return
	}
	if err := n.sync(); err != nil {
		sub.cancel()
		ready <- err
		return
	}
	ready <- nil
	for {
		select {
		case <-w.quit:
			sub.cancel()
			return
		case u, ok := <-sub.updates:
			if ok {
				n.update(u)
				continue
			}
			// The subscription ended, most likely because its socket
			// buffer overran: subscribe again and catch up from a listing.
			sub.cancel()
			if sub = n.resubscribe(w.quit); sub == nil {
				return
			}
			if err := n.sync(); err != nil {
				n.opts.Logger.Warn("net collector: cannot list links", "err", err)
			}
		}
	}
}

// netSubscription is a netlink subscription to link changes.
type netSubscription struct {
	updates chan netlink.LinkUpdate
	done    chan struct{}
}

// cancel ends the subscription and waits for its goroutine.
func (s *netSubscription) cancel() {
	close(s.done)
	for range s.updates {
	}
}

// enter moves the calling (locked) thread into ns, unless it is there
// already: setns(2) needs CAP_SYS_ADMIN, which the daemon does not keep.
func enter(ns netns.NsHandle) error {
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer cur.Close()
	if cur.Equal(ns) {
		return nil
	}
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("enter network namespace: %w", err)
	}
	return nil
}

func (n *Net) subscribe() (*netSubscription, error) {
	s := &netSubscription{updates: make(chan netlink.LinkUpdate, 64), done: make(chan struct{})}
	// The watcher's thread is in the host's namespace already: naming it
	// here would make netlink enter it again, which needs CAP_SYS_ADMIN.
	err := netlink.LinkSubscribeWithOptions(s.updates, s.done, netlink.LinkSubscribeOptions{
		ReceiveBufferSize: 1 << 20,
		ErrorCallback: func(err error) {
			select {
			case <-s.done: // the error of closing the socket
			default:
				n.opts.Logger.Debug("net collector: link subscription", "err", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to link changes: %w", err)
	}
	return s, nil
}

// resubscribe subscribes until it works or quit is closed.
func (n *Net) resubscribe(quit <-chan struct{}) *netSubscription {
	for {
		s, err := n.subscribe()
		if err == nil {
			return s
		}
		n.opts.Logger.Warn("net collector: cannot watch links", "err", err)
		select {
		case <-quit:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sync brings the counted links in step with a listing of the host's. It
// fails only when the links cannot be listed or the chosen mode is not
// supported; what fails for one link is logged.
func (n *Net) sync() error {
	links, err := n.nl.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	present := make(map[int]bool, len(links))
	for _, l := range links {
		a := l.Attrs()
		present[a.Index] = true
		err := n.track(a.Name, a.Index)
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("attach to %s: %w", a.Name, err)
		}
		n.logLink(a.Name, a.Index, err)
	}
	for _, l := range n.sorted() {
		if !present[l.index] {
			n.logLink(l.name, l.index, n.untrack(l, true))
		}
	}
	return nil
}

// update handles one link change.
func (n *Net) update(u netlink.LinkUpdate) {
	a := u.Link.Attrs()
	n.mu.Lock()
	defer n.mu.Unlock()
	switch u.Header.Type {
	case unix.RTM_NEWLINK:
		n.logLink(a.Name, a.Index, n.track(a.Name, a.Index))
	case unix.RTM_DELLINK:
		if l := n.links[a.Index]; l != nil {
			n.logLink(a.Name, a.Index, n.untrack(l, true))
		}
	}
}

// logLink logs what failed for one link, unless the link vanished.
func (n *Net) logLink(name string, index int, err error) {
	switch {
	case err == nil:
	case errors.Is(err, unix.ENODEV):
		n.opts.Logger.Debug("net collector: link vanished", "link", name, "ifindex", index, "err", err)
	default:
		n.opts.Logger.Warn("net collector: cannot count link", "link", name, "ifindex", index, "err", err)
	}
}

// track brings the link with this ifindex, now named name, in step with
// the options: counted and attached if they select it, released if not.
// n.mu is held.
func (n *Net) track(name string, index int) error {
	l := n.links[index]
	want := n.opts.counts(name)
	if l != nil && l.name != name {
		// Renamed, or while detached, replaced by a link with the same
		// index: the counts under the old name end here.
		if !want {
			return n.untrack(l, false)
		}
		n.rename(l, name)
	}
	if !want || (l != nil && l.attached()) {
		return nil
	}
	fresh := l == nil
	if fresh {
		if err := n.createCounters(index); err != nil {
			return err
		}
		l = &netLink{name: name, index: index}
		n.links[index] = l
	}
	err := n.attachLink(l)
	if err != nil && fresh { // nothing counted yet: nothing to report
		err = errors.Join(err, n.deleteCounters(l))
	}
	return err
}

// rename ends the counts under a link's old name, which Read reports as
// gone, and starts them again under the new one. n.mu is held.
func (n *Net) rename(l *netLink, name string) {
	for d := range NetDirection(2) {
		c, err := n.lookup(l.index, d)
		if err != nil {
			continue // the counters are missing: there is nothing to end
		}
		n.gone = append(n.gone, NetStats{
			Interface: l.name, Index: l.index, Direction: d, Gone: true,
			Packets: c.Packets - l.base[d].Packets, Bytes: c.Bytes - l.base[d].Bytes,
		})
		l.base[d] = c
	}
	l.name = name
}

// untrack detaches a link, reports its last counts and deletes its
// counters. vanished says the link is no longer in the namespace. n.mu is
// held.
func (n *Net) untrack(l *netLink, vanished bool) error {
	return errors.Join(n.detachLink(l, vanished), n.forget(l))
}

// deleteCounters deletes a link's counters without reporting them. n.mu is
// held.
func (n *Net) deleteCounters(l *netLink) error {
	delete(n.links, l.index)
	var errs []error
	for d := range uint32(2) {
		key := netNetKey{Ifindex: uint32(l.index), Dir: d}
		if err := n.objs.NetCounters.Delete(&key); err != nil {
			errs = append(errs, fmt.Errorf("delete net counters: %w", err))
		}
	}
	return errors.Join(errs...)
}

// attachLink attaches the programs to a link, in the mode chosen or, in
// NetAuto mode, in the first that works. n.mu is held.
func (n *Net) attachLink(l *netLink) error {
	if n.mode != NetClsact {
		err := n.attachTCX(l)
		switch {
		case err == nil:
			n.mode = NetTCX
			return nil
		case n.mode == NetAuto && errors.Is(err, ebpf.ErrNotSupported):
			n.opts.Logger.Info("net collector: no TCX in this kernel, attaching clsact filters", "err", err)
			n.mode = NetClsact
		default:
			return err
		}
	}
	return n.attachFilters(l)
}

// detachLink detaches the programs from a link. When it vanished, its
// filters went with it. n.mu is held.
func (n *Net) detachLink(l *netLink, vanished bool) error {
	var errs []error
	for d, tl := range l.tcx {
		if tl != nil {
			if err := tl.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close TCX link: %w", err))
			}
			l.tcx[d] = nil
		}
	}
	if l.filters && !vanished {
		errs = append(errs, n.detachFilters(l))
	}
	l.filters, l.ownQdisc = false, false
	return errors.Join(errs...)
}

// attachTCX attaches a TCX link per direction, ahead of any other program.
func (n *Net) attachTCX(l *netLink) error {
	for d, p := range n.programs() {
		tl, err := link.AttachTCX(link.TCXOptions{
			Interface: l.index, Program: p, Attach: netTCXAttach[d], Anchor: link.Head(),
		})
		if err != nil {
			return errors.Join(fmt.Errorf("attach TCX %s: %w", NetDirection(d), err), n.detachLink(l, true))
		}
		l.tcx[d] = tl
	}
	return nil
}

// attachFilters adds a filter per direction to the link's clsact qdisc,
// creating the qdisc if the link has none.
func (n *Net) attachFilters(l *netLink) error {
	dev := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: l.index}}
	err := n.nl.QdiscAdd(netClsact(l.index))
	switch {
	case err == nil:
		l.ownQdisc = true
	case errors.Is(err, unix.EEXIST): // a clsact or ingress qdisc
		if err := n.checkClsact(dev); err != nil {
			return err
		}
	default:
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	l.filters = true // from here on, detachFilters undoes what was done
	for d := range NetDirection(2) {
		// A qdisc just created has no filters to look at.
		if err := n.addFilter(dev, d, !l.ownQdisc); err != nil {
			return errors.Join(err, n.detachLink(l, false))
		}
	}
	return nil
}

func netClsact(index int) *netlink.Clsact {
	return &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT,
	}}
}

// checkClsact fails unless the link's ingress qdisc slot holds clsact.
func (n *Net) checkClsact(dev netlink.Link) error {
	qdiscs, err := n.nl.QdiscList(dev)
	if err != nil {
		return fmt.Errorf("list qdiscs: %w", err)
	}
	for _, q := range qdiscs {
		if q.Attrs().Parent == netlink.HANDLE_CLSACT && q.Type() != "clsact" {
			return fmt.Errorf("add filters: the link has an %s qdisc, not clsact", q.Type())
		}
	}
	return nil
}

// addFilter adds the filter for d at a priority no other filter holds, or
// replaces one that an earlier run of the same instance left behind (a
// filter of the same name: another instance's filters have other names). Unless look is set, the qdisc
// is known to have no filters.
func (n *Net) addFilter(dev netlink.Link, d NetDirection, look bool) error {
	taken := make(map[uint16]bool)
	stale := uint16(0)
	if look {
		filters, err := n.nl.FilterList(dev, netFilterParents[d])
		if err != nil {
			return fmt.Errorf("list %s filters: %w", d, err)
		}
		for _, f := range filters {
			a := f.Attrs()
			bf, ok := f.(*netlink.BpfFilter)
			switch {
			case a.Handle == 0: // the dump's header of a priority
			case ok && a.Handle == netFilterHandle && bf.Name == n.filterNames[d]:
				stale = a.Priority
			default:
				taken[a.Priority] = true
			}
		}
	}
	prio := n.opts.FilterPriority
	switch {
	case prio != 0 && taken[prio]:
		return fmt.Errorf("add %s filter: priority %d is taken by a filter that is not bpfstatd's", d, prio)
	case prio == 0 && stale != 0 && !taken[stale]:
		prio = stale
	case prio == 0:
		for prio = 1; taken[prio]; prio++ {
		}
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: dev.Attrs().Index, Parent: netFilterParents[d],
			Handle: netFilterHandle, Priority: prio, Protocol: unix.ETH_P_ALL,
		},
		Fd: n.programs()[d].FD(), Name: n.filterNames[d], DirectAction: true,
	}
	var err error
	if prio == stale {
		err = n.nl.FilterReplace(f)
	} else {
		err = n.nl.FilterAdd(f)
	}
	if err != nil {
		return fmt.Errorf("add %s filter at priority %d: %w", d, prio, err)
	}
	return nil
}

// detachFilters deletes the filters that run the programs on the link, and
// its clsact qdisc if bpfstatd created it and no filter is left on it.
func (n *Net) detachFilters(l *netLink) error {
	dev := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: l.index}}
	var errs []error
	left := 0
	for d := range NetDirection(2) {
		filters, err := n.nl.FilterList(dev, netFilterParents[d])
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s filters: %w", d, err))
			left++
			continue
		}
		for _, f := range filters {
			switch {
			case f.Attrs().Handle == 0:
				// The dump's header of a priority: never deleted (that
				// would delete every filter at it), it goes with the last.
			case !n.ownFilter(f, d):
				left++
			default:
				if err := n.nl.FilterDel(f); err != nil {
					errs = append(errs, fmt.Errorf("delete %s filter: %w", d, err))
					left++
				}
			}
		}
	}
	if l.ownQdisc && left == 0 {
		if err := n.nl.QdiscDel(netClsact(l.index)); err != nil {
			errs = append(errs, fmt.Errorf("delete clsact qdisc: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ownFilter reports whether f is the filter that runs this collector's
// program for d.
func (n *Net) ownFilter(f netlink.Filter, d NetDirection) bool {
	a := f.Attrs()
	bf, ok := f.(*netlink.BpfFilter)
	return ok && a.Handle == netFilterHandle && bf.Name == n.filterNames[d] && bf.Id == int(n.progIDs[d])
}

// netFilterNames returns the names of an instance's clsact filters, per
// direction: "bpfstatd_net_ingress" and "bpfstatd_net_egress" for the
// unnamed instance, with "_" and a hash of the instance's name appended
// for another.
func netFilterNames(instance string) [2]string {
	names := [2]string{"bpfstatd_net_ingress", "bpfstatd_net_egress"}
	if instance != "" {
		h := fnv.New32a()
		h.Write([]byte(instance))
		for d := range names {
			names[d] += fmt.Sprintf("_%08x", h.Sum32())
		}
	}
	return names
}

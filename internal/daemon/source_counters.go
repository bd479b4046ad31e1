package daemon

import (
	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// Metrics of the skb, syscalls and net collectors.
const (
	MetricSKBDrop           = "host.skb.drop"
	MetricSyscalls          = "host.syscalls"
	MetricSyscallsByProcess = "host.syscalls.by_process"
	MetricNetPackets        = "host.net.packets"
	MetricNetBytes          = "host.net.bytes"
)

// skbSource counts dropped packets by the kernel's drop reason, from
// per-CPU counters read once an interval.
type skbSource struct {
	c          *bpf.SKB
	drop       *shipper.Metric
	names      [bpf.SKBDropSlots + 1][]byte // reason names, the last for out of range
	last, curr bpf.SKBDrops
}

func openSKB(sh *bpf.Shared) (source, error) {
	c, err := bpf.LoadSKB(sh)
	if err != nil {
		return nil, err
	}
	return &skbSource{c: c}, nil
}

func (s *skbSource) collector() bpf.Collector { return s.c }
func (s *skbSource) programs() []bpf.Program  { return []bpf.Program{bpf.ProgSKBDrop} }

func (s *skbSource) register(r *registrar) {
	s.drop = r.metric(shipper.MetricSpec{Name: MetricSKBDrop, TagKeys: []string{"reason"}, MaxSeries: bpf.SKBDropSlots + 1})
	if r.err != nil {
		return
	}
	// Reason names come from kernel BTF: convert them once, up front. Their
	// keys are looked up each time, not kept: a series idle for the
	// aggregator's IdleIntervals is evicted and its key reused.
	for i := range s.names {
		s.names[i] = []byte(s.c.ReasonName(uint32(i)))
	}
}

func (s *skbSource) record(*bpf.Record, *shipper.Aggregator) {}

func (s *skbSource) read(agg *shipper.Aggregator) error {
	if err := s.c.Read(&s.curr); err != nil {
		return err
	}
	for i, n := range s.curr.ByReason {
		if d := n - s.last.ByReason[i]; d != 0 {
			agg.Add(s.drop.Key(s.names[i]), int64(d))
		}
	}
	if d := s.curr.OutOfRange - s.last.OutOfRange; d != 0 {
		agg.Add(s.drop.Key(s.names[bpf.SKBDropSlots]), int64(d))
	}
	s.last = s.curr
	return nil
}

// syscallSource counts syscalls by name from per-CPU counters, and, with
// --syscalls-by-process, by the calling thread's name from ring records.
type syscallSource struct {
	c          *bpf.Syscalls
	byName     *shipper.Metric
	byProcess  *shipper.Metric
	byComm     *shipper.KeyCache            // byProcess's keys by the raw comm
	names      [bpf.MaxSyscallNr + 1][]byte // syscall names, the last for out of range
	last, curr bpf.SyscallCounts
	rec        bpf.SyscallRecord
}

func openSyscalls(sh *bpf.Shared, byProcess bool) (source, error) {
	c, err := bpf.LoadSyscalls(sh)
	if err != nil {
		return nil, err
	}
	if err := c.SetByProcess(byProcess); err != nil {
		c.Close()
		return nil, err
	}
	return &syscallSource{c: c}, nil
}

func (s *syscallSource) collector() bpf.Collector { return s.c }
func (s *syscallSource) programs() []bpf.Program {
	return []bpf.Program{bpf.ProgSyscalls, bpf.ProgSyscallProc}
}

func (s *syscallSource) register(r *registrar) {
	s.byName = r.metric(shipper.MetricSpec{Name: MetricSyscalls, TagKeys: []string{"syscall"}, MaxSeries: bpf.MaxSyscallNr + 1})
	s.byProcess = r.metric(shipper.MetricSpec{Name: MetricSyscallsByProcess, TagKeys: []string{"comm"}, Priority: shipper.Low})
	if r.err != nil {
		return
	}
	// Keys are looked up each time, not kept: a series idle for the
	// aggregator's IdleIntervals is evicted and its key reused.
	for nr := range uint32(bpf.MaxSyscallNr) {
		s.names[nr] = []byte(bpf.SyscallName(nr))
	}
	s.names[bpf.MaxSyscallNr] = []byte("out_of_range")
	// Up to a record per syscall: look its comm up by the kernel's 16 bytes,
	// not by hashing the name. The cache drops what eviction invalidates.
	s.byComm = shipper.NewKeyCache(s.byProcess, syscallCommSlots)
}

// syscallCommSlots is the size of the by-process key cache: thread names
// busy at once on a host are far fewer.
const syscallCommSlots = 1024

func (s *syscallSource) record(r *bpf.Record, agg *shipper.Aggregator) {
	if r.Syscall(&s.rec) == nil {
		agg.Add(s.byComm.Key(&s.rec.Comm), int64(s.rec.Events()))
	}
}

func (s *syscallSource) read(agg *shipper.Aggregator) error {
	if err := s.c.ReadCounts(&s.curr); err != nil {
		return err
	}
	for nr, n := range s.curr.ByNr {
		if d := n - s.last.ByNr[nr]; d != 0 {
			agg.Add(s.byName.Key(s.names[nr]), int64(d))
		}
	}
	if d := s.curr.OutOfRange - s.last.OutOfRange; d != 0 {
		agg.Add(s.byName.Key(s.names[bpf.MaxSyscallNr]), int64(d))
	}
	s.last = s.curr
	return nil
}

// netSource counts packets and bytes per interface and direction.
type netSource struct {
	c             *bpf.Net
	packets, byts *shipper.Metric
	last          map[netKey]bpf.NetStats
}

type netKey struct {
	index int
	dir   bpf.NetDirection
}

func openNet(sh *bpf.Shared, cfg Config) (source, error) {
	c, err := bpf.LoadNet(sh, bpf.NetOptions{Include: cfg.Interfaces, Exclude: cfg.ExcludeInterfaces, Instance: cfg.AdminSocket})
	if err != nil {
		return nil, err
	}
	return &netSource{c: c, last: make(map[netKey]bpf.NetStats)}, nil
}

func (s *netSource) collector() bpf.Collector { return s.c }
func (s *netSource) programs() []bpf.Program {
	return []bpf.Program{bpf.ProgNetIngress, bpf.ProgNetEgress}
}

func (s *netSource) register(r *registrar) {
	tags := []string{"iface", "direction"}
	s.packets = r.metric(shipper.MetricSpec{Name: MetricNetPackets, TagKeys: tags})
	s.byts = r.metric(shipper.MetricSpec{Name: MetricNetBytes, TagKeys: tags})
}

func (s *netSource) record(*bpf.Record, *shipper.Aggregator) {}

func (s *netSource) read(agg *shipper.Aggregator) error {
	stats, err := s.c.Read()
	if err != nil {
		return err
	}
	for _, st := range stats {
		k := netKey{st.Index, st.Direction}
		prev, ok := s.last[k]
		if !ok || prev.Interface != st.Interface || prev.Packets > st.Packets {
			prev = bpf.NetStats{} // a new link, or one renamed: counts start at zero
		}
		if dp := st.Packets - prev.Packets; dp != 0 {
			iface, dir := []byte(st.Interface), []byte(st.Direction.String())
			agg.Add(s.packets.Key(iface, dir), int64(dp))
			agg.Add(s.byts.Key(iface, dir), int64(st.Bytes-prev.Bytes))
		}
		if st.Gone {
			delete(s.last, k)
		} else {
			s.last[k] = st
		}
	}
	return nil
}

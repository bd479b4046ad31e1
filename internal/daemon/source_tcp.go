package daemon

import (
	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// Metrics of the tcp and oom collectors.
const (
	MetricTCPRetransmit    = "host.tcp.retransmit"
	MetricTCPReset         = "host.tcp.reset"
	MetricTCPOpen          = "host.tcp.open"
	MetricTCPConnectFailed = "host.tcp.connect_failed"
	MetricOOMKill          = "host.oom.kill"
)

// tcpSource counts retransmitted segments, resets by direction, opens by
// direction and failed connects by the connecting process's name.
type tcpSource struct {
	c                 *bpf.TCP
	retransmit, reset *shipper.Metric
	open, failed      *shipper.Metric
	rec               bpf.TCPRecord
}

// Tag values of host.tcp.reset and host.tcp.open. Keys are looked up per
// event, not kept: an idle series is evicted and its key reused.
var (
	dirSent     = []byte("sent")
	dirReceived = []byte("received")
	dirActive   = []byte("active")
	dirPassive  = []byte("passive")
)

func openTCP(sh *bpf.Shared) (source, error) {
	c, err := bpf.LoadTCP(sh)
	if err != nil {
		return nil, err
	}
	return &tcpSource{c: c}, nil
}

func (s *tcpSource) collector() bpf.Collector { return s.c }
func (s *tcpSource) programs() []bpf.Program {
	return []bpf.Program{bpf.ProgTCPRetransmit, bpf.ProgTCPSendReset, bpf.ProgTCPReceiveReset, bpf.ProgTCPState}
}

func (s *tcpSource) register(r *registrar) {
	s.retransmit = r.metric(shipper.MetricSpec{Name: MetricTCPRetransmit})
	s.reset = r.metric(shipper.MetricSpec{Name: MetricTCPReset, TagKeys: []string{"dir"}})
	s.open = r.metric(shipper.MetricSpec{Name: MetricTCPOpen, TagKeys: []string{"dir"}})
	s.failed = r.metric(shipper.MetricSpec{Name: MetricTCPConnectFailed, TagKeys: []string{"comm"}})
}

func (s *tcpSource) record(r *bpf.Record, agg *shipper.Aggregator) {
	if r.TCP(&s.rec) != nil {
		return
	}
	n := int64(s.rec.Rate)
	switch s.rec.Event {
	case bpf.TCPRetransmit:
		if s.rec.Code == 0 {
			agg.Add(s.retransmit.Key(), n*int64(s.rec.Segs))
		}
	case bpf.TCPSendReset:
		agg.Add(s.reset.Key(dirSent), n)
	case bpf.TCPReceiveReset:
		agg.Add(s.reset.Key(dirReceived), n)
	case bpf.TCPActiveOpen:
		agg.Add(s.open.Key(dirActive), n)
	case bpf.TCPPassiveOpen:
		agg.Add(s.open.Key(dirPassive), n)
	case bpf.TCPFailedConnect:
		agg.Add(s.failed.Key(s.rec.Name()), n)
	}
}

func (s *tcpSource) read(*shipper.Aggregator) error { return nil }

// oomSource counts OOM kills by the victim's name. They ship first and are
// never shed.
type oomSource struct {
	c    *bpf.OOM
	kill *shipper.Metric
	rec  bpf.OOMRecord
}

func openOOM(sh *bpf.Shared) (source, error) {
	c, err := bpf.LoadOOM(sh)
	if err != nil {
		return nil, err
	}
	return &oomSource{c: c}, nil
}

func (s *oomSource) collector() bpf.Collector { return s.c }
func (s *oomSource) programs() []bpf.Program  { return []bpf.Program{bpf.ProgOOM} }

func (s *oomSource) register(r *registrar) {
	s.kill = r.metric(shipper.MetricSpec{Name: MetricOOMKill, TagKeys: []string{"comm"}, Priority: shipper.Critical})
}

func (s *oomSource) record(r *bpf.Record, agg *shipper.Aggregator) {
	if r.OOM(&s.rec) == nil {
		agg.Add(s.kill.Key(s.rec.Name()), int64(s.rec.Rate))
	}
}

func (s *oomSource) read(*shipper.Aggregator) error { return nil }

package daemon

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// source is one collector as the daemon runs it: its kernel side, the
// metrics it ships, and how its ring records and its per-interval reads of
// kernel counters become aggregator updates. record and read are called
// with the pipeline's lock held, from the drain goroutine and the flush
// loop; the rest from the goroutine that runs the daemon.
type source interface {
	collector() bpf.Collector
	// programs are the collector's sections of the drop ledger.
	programs() []bpf.Program
	// register registers the metrics the source ships.
	register(r *registrar)
	// record aggregates one ring record of the source's kinds.
	record(r *bpf.Record, agg *shipper.Aggregator)
	// read aggregates the kernel counters' change since the last read.
	read(agg *shipper.Aggregator) error
}

// collectorNames are the collectors --collectors accepts, in start order.
var collectorNames = []string{"process", "tcp", "oom", "skb", "syscalls", "net", "block", "runq"}

// defaultCollectors are enabled unless --collectors says otherwise.
const defaultCollectors = "process,tcp,oom,skb,syscalls,net,block,runq"

// checkCollectors validates the names given to --collectors.
func checkCollectors(names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("no collector named: choose from %s", strings.Join(collectorNames, ", "))
	}
	for _, n := range names {
		if !slices.Contains(collectorNames, n) {
			return fmt.Errorf("unknown collector %q: choose from %s", n, strings.Join(collectorNames, ", "))
		}
	}
	return nil
}

// openSources loads the enabled collectors, in collectorNames order, into
// the kernel. On error it closes what it loaded.
func openSources(cfg Config, sh *bpf.Shared) (srcs []source, err error) {
	defer func() {
		if err != nil {
			for _, s := range srcs {
				s.collector().Close()
			}
			srcs = nil
		}
	}()
	for _, name := range collectorNames {
		if !slices.Contains(cfg.Collectors, name) {
			continue
		}
		var s source
		switch name {
		case "process":
			s, err = openProcess(sh)
		case "tcp":
			s, err = openTCP(sh)
		case "oom":
			s, err = openOOM(sh)
		case "skb":
			s, err = openSKB(sh)
		case "syscalls":
			s, err = openSyscalls(sh, cfg.SyscallsByProcess)
		case "net":
			s, err = openNet(sh, cfg)
		case "block":
			s, err = openBlock(sh)
		case "runq":
			s, err = openRunq(sh)
		}
		if err != nil {
			return srcs, err
		}
		srcs = append(srcs, s)
	}
	return srcs, nil
}

// registrar registers metrics, keeping the first error.
type registrar struct {
	in  *shipper.Interner
	err error
}

func (r *registrar) metric(spec shipper.MetricSpec) *shipper.Metric {
	m, err := r.in.Register(spec)
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("register metric %s: %w", spec.Name, err)
	}
	return m
}

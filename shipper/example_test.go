package shipper_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/bpfstatd/bpfstatd/shipper"
)

// ship aggregates one interval of a few metrics and writes the lines of
// dialect d to standard output.
func ship(d shipper.Dialect) {
	in, err := shipper.NewInterner(shipper.InternerOptions{Tags: []string{"env:prod"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	exec, _ := in.Register(shipper.MetricSpec{Name: "host.process.exec", TagKeys: []string{"comm"}})
	free, _ := in.Register(shipper.MetricSpec{Name: "host.mem.delta", Kind: shipper.Gauge})
	size, _ := in.Register(shipper.MetricSpec{Name: "host.req.bytes", Kind: shipper.Distribution})
	lat, _ := in.Register(shipper.MetricSpec{Name: "host.block.latency_ns", Kind: shipper.Histogram, Priority: shipper.Critical})

	agg := shipper.NewAggregator(in, shipper.AggregatorOptions{})
	agg.Add(exec.Key([]byte("bash")), 2)
	agg.Add(exec.Key([]byte("bash")), 1)
	agg.Add(exec.Key([]byte("x\ny:1|c|#a:b")), 1) // a hostile process name
	agg.Set(free.Key(), -5)
	agg.Observe(size.Key(), 512)
	agg.Observe(size.Key(), 1024.5)
	agg.AddBuckets(lat.Key(), []uint64{0, 0, 0, 4, 2}) // kernel log2 buckets

	sh, err := shipper.NewWriter(os.Stdout, shipper.Options{Dialect: d})
	if err != nil {
		fmt.Println(err)
		return
	}
	sh.Flush(agg)
	sh.Send(context.Background())
}

// DogStatsD, the default: tags after "|#", several values in one line,
// kernel buckets at their midpoints with sample rate 1/count.
func ExampleNewWriter_dogstatsd() {
	ship(shipper.DogStatsD)
	// Output:
	// host.block.latency_ns:12|h|@0.5|#env:prod
	// host.block.latency_ns:6|h|@0.25|#env:prod
	// host.process.exec:3|c|#comm:bash,env:prod
	// host.process.exec:1|c|#comm:x_y_1_c__a_b,env:prod
	// host.mem.delta:-5|g|#env:prod
	// host.req.bytes:512:1024.5|d|#env:prod
}

// StatsD (Etsy): no tags, histograms and distributions as timers, several
// values as "v1|ms:v2|ms", and a negative gauge set from zero.
func ExampleNewWriter_statsd() {
	ship(shipper.StatsD)
	// Output:
	// host.block.latency_ns:12|ms|@0.5
	// host.block.latency_ns:6|ms|@0.25
	// host.process.exec:3|c
	// host.process.exec:1|c
	// host.mem.delta:0|g
	// host.mem.delta:-5|g
	// host.req.bytes:512|ms:1024.5|ms
}

// statsd_exporter: DogStatsD tags and packing, a negative gauge set from
// zero since a sign makes a gauge relative.
func ExampleNewWriter_statsdExporter() {
	ship(shipper.StatsdExporter)
	// Output:
	// host.block.latency_ns:12|h|@0.5|#env:prod
	// host.block.latency_ns:6|h|@0.25|#env:prod
	// host.process.exec:3|c|#comm:bash,env:prod
	// host.process.exec:1|c|#comm:x_y_1_c__a_b,env:prod
	// host.mem.delta:0|g|#env:prod
	// host.mem.delta:-5|g|#env:prod
	// host.req.bytes:512:1024.5|d|#env:prod
}

// Telegraf: tags in the name, distributions as "h".
func ExampleNewWriter_telegraf() {
	ship(shipper.Telegraf)
	// Output:
	// host.block.latency_ns,env=prod:12|h|@0.5
	// host.block.latency_ns,env=prod:6|h|@0.25
	// host.process.exec,comm=bash,env=prod:3|c
	// host.process.exec,comm=x_y_1_c__a_b,env=prod:1|c
	// host.mem.delta,env=prod:0|g
	// host.mem.delta,env=prod:-5|g
	// host.req.bytes,env=prod:512|h:1024.5|h
}

// gostatsd: DogStatsD tags, no "d", one value per line.
func ExampleNewWriter_gostatsd() {
	ship(shipper.Gostatsd)
	// Output:
	// host.block.latency_ns:12|h|@0.5|#env:prod
	// host.block.latency_ns:6|h|@0.25|#env:prod
	// host.process.exec:3|c|#comm:bash,env:prod
	// host.process.exec:1|c|#comm:x_y_1_c__a_b,env:prod
	// host.mem.delta:0|g|#env:prod
	// host.mem.delta:-5|g|#env:prod
	// host.req.bytes:512|h|#env:prod
	// host.req.bytes:1024.5|h|#env:prod
}

// The health level drives the kernel sampling knob (through OnLevel),
// low-priority shedding, and the flush interval.
func ExampleHealth() {
	in, _ := shipper.NewInterner(shipper.InternerOptions{})
	agg := shipper.NewAggregator(in, shipper.AggregatorOptions{})
	h := shipper.NewHealth(shipper.HealthOptions{OnLevel: func(old, new shipper.Level) {
		fmt.Printf("%v -> %v: kernel keeps 1 event in %d\n", old, new, new.SampleEvery())
	}})
	for _, ring := range []float64{0.2, 0.9, 0.9, 0.1, 0.1, 0.1} {
		l := h.Observe(shipper.Signals{RingFill: ring})
		agg.SetShed(l.Shed())
		fmt.Printf("ring %.0f%%: flush every %v\n", ring*100, l.FlushInterval(time.Second))
	}
	// Output:
	// ring 20%: flush every 1s
	// level 0 -> level 1: kernel keeps 1 event in 2
	// ring 90%: flush every 2s
	// level 1 -> level 2: kernel keeps 1 event in 4
	// ring 90%: flush every 4s
	// ring 10%: flush every 4s
	// ring 10%: flush every 4s
	// level 2 -> level 1: kernel keeps 1 event in 2
	// ring 10%: flush every 2s
}

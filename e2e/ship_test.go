package e2e

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"
	"github.com/prometheus/statsd_exporter/pkg/event"
	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/shipper"
)

// The shipping workload: benchSeries series of one counter, each updated
// benchUpdates times per round, with a per-series tag and a global one.
const (
	benchSeries  = 10000
	benchUpdates = 100
	benchMetric  = "bench.counter"
)

// loopReceiver reads UDP datagrams on loopback, parses every line with
// statsd_exporter's parser, and sums counter values per series. Anything
// else it sees (another name, other labels, parse errors) is counted as
// bad.
type loopReceiver struct {
	conn   *net.UDPConn
	parser *exporterParser

	mu        sync.Mutex
	cond      *sync.Cond
	totals    map[string]float64
	sum       float64
	datagrams int
	bad       []string
	done      chan struct{}
}

func newLoopReceiver(tb testing.TB) *loopReceiver {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	// A flush of 10,000 lines is ~500 KB at once: make room for it, past
	// rmem_max where we may.
	conn.SetReadBuffer(64 << 20) // capped by net.core.rmem_max
	if rc, err := conn.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20) }) // root only
	}
	r := &loopReceiver{conn: conn, parser: newExporterParser(shipper.DogStatsD), totals: map[string]float64{}, done: make(chan struct{})}
	r.cond = sync.NewCond(&r.mu)
	go r.run()
	tb.Cleanup(func() { conn.Close(); <-r.done })
	return r
}

func (r *loopReceiver) addr() string { return r.conn.LocalAddr().String() }

func (r *loopReceiver) run() {
	defer close(r.done)
	buf := make([]byte, 65536)
	for {
		n, err := r.conn.Read(buf)
		if err != nil {
			return
		}
		events := r.parser.parse(string(buf[:n]))
		r.mu.Lock()
		r.datagrams++
		for _, e := range events {
			c, ok := e.(*event.CounterEvent)
			l := e.Labels()
			if !ok || c.MetricName() != benchMetric || len(l) != 2 || l["env"] != "bench" || l["series"] == "" {
				r.bad = append(r.bad, e.MetricName())
				continue
			}
			r.totals[l["series"]] += c.Value()
			r.sum += c.Value()
		}
		r.cond.Broadcast()
		r.mu.Unlock()
	}
}

// wait waits until the values received add up to sum.
func (r *loopReceiver) wait(tb testing.TB, sum float64) {
	tb.Helper()
	timer := time.AfterFunc(10*time.Second, func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(10 * time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.sum < sum && time.Now().Before(deadline) {
		r.cond.Wait()
	}
	if r.sum != sum {
		tb.Fatalf("receiver got a total of %v, want %v", r.sum, sum)
	}
}

// verify checks that every one of series arrived with its exact total.
func (r *loopReceiver) verify(tb testing.TB, series, rounds int) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.parser.errors(); e != "" || len(r.bad) != 0 {
		tb.Fatalf("parser errors %q, %d unexpected events", e, len(r.bad))
	}
	if len(r.totals) != series {
		tb.Fatalf("receiver saw %d series, want %d", len(r.totals), series)
	}
	for s, v := range r.totals {
		if v != float64(rounds*benchUpdates) {
			tb.Fatalf("series %s: total %v, want %d", s, v, rounds*benchUpdates)
		}
	}
}

// client is one way of shipping the workload.
type client interface {
	round() // all updates of one round
	flush()
}

type bpfstatdClient struct {
	agg  *shipper.Aggregator
	m    *shipper.Metric
	sh   *shipper.Shipper
	vals [][]byte
}

func (c *bpfstatdClient) round() {
	for range benchUpdates {
		for _, v := range c.vals {
			c.agg.Add(c.m.Key(v), 1)
		}
	}
}

func (c *bpfstatdClient) flush() { c.sh.Flush(c.agg) }

func newBpfstatd(tb testing.TB, addr string, series int) *bpfstatdClient {
	in, err := shipper.NewInterner(shipper.InternerOptions{Tags: []string{"env:bench"}, MaxSeries: 2 * benchSeries, MaxSeriesPerMetric: 2 * benchSeries})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := in.Register(shipper.MetricSpec{Name: benchMetric, TagKeys: []string{"series"}})
	if err != nil {
		tb.Fatal(err)
	}
	sh, err := shipper.Dial("udp", addr, shipper.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sh.Run(ctx); close(done) }()
	tb.Cleanup(func() {
		cancel()
		<-done
		sh.Close(context.Background())
		if c := sh.Stats().Counts; c[shipper.StatDatagramsFailed] != 0 || c[shipper.StatDatagramsSent] != c[shipper.StatDatagramsQueued] {
			tb.Errorf("bpfstatd: queued %d, sent %d, failed %d", c[shipper.StatDatagramsQueued], c[shipper.StatDatagramsSent], c[shipper.StatDatagramsFailed])
		}
	})
	c := &bpfstatdClient{agg: shipper.NewAggregator(in, shipper.AggregatorOptions{}), m: m, sh: sh}
	for i := range series {
		c.vals = append(c.vals, []byte(strconv.Itoa(i)))
	}
	return c
}

type datadogClient struct {
	c    *statsd.Client
	tags [][]string
}

func (c *datadogClient) round() {
	for range benchUpdates {
		for _, t := range c.tags {
			c.c.Count(benchMetric, 1, t, 1)
		}
	}
}

func (c *datadogClient) flush() { c.c.Flush() }

func newDatadog(tb testing.TB, addr string, series int) *datadogClient {
	c, err := statsd.New(addr,
		statsd.WithClientSideAggregation(),
		statsd.WithoutTelemetry(),
		statsd.WithTags([]string{"env:bench"}),
		statsd.WithMaxBytesPerPayload(shipper.UDPPayload),
		statsd.WithAggregationInterval(time.Hour), // flushed by the benchmark
	)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	d := &datadogClient{c: c}
	for i := range series {
		d.tags = append(d.tags, []string{"series:" + strconv.Itoa(i)})
	}
	return d
}

// BenchmarkShip ships 10,000 series × 100 updates a round, tags included,
// with bpfstatd and with datadog-go (client-side aggregation on) to a
// loopback receiver that parses every datagram with statsd_exporter's
// parser: a round ends when the receiver has the round's exact total, and
// at the end every series must have arrived with its exact total.
func BenchmarkShip(b *testing.B) {
	for _, tc := range []struct {
		name string
		new  func(testing.TB, string, int) client
	}{
		{"bpfstatd", func(tb testing.TB, addr string, n int) client { return newBpfstatd(tb, addr, n) }},
		{"datadog-go", func(tb testing.TB, addr string, n int) client { return newDatadog(tb, addr, n) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newLoopReceiver(b)
			c := tc.new(b, r.addr(), benchSeries)
			rounds := 0
			b.ReportAllocs()
			for b.Loop() {
				c.round()
				c.flush()
				rounds++
				r.wait(b, float64(rounds*benchSeries*benchUpdates))
			}
			b.ReportMetric(float64(rounds*benchSeries*benchUpdates)/b.Elapsed().Seconds(), "updates/s")
			r.verify(b, benchSeries, rounds)
		})
	}
}

// TestShip runs two rounds of a smaller shipping workload for each
// client, so that the suite checks what the benchmark measures without
// needing a receive buffer past rmem_max.
func TestShip(t *testing.T) {
	const series = 1000
	for name, mk := range map[string]func(testing.TB, string, int) client{
		"bpfstatd":   func(tb testing.TB, addr string, n int) client { return newBpfstatd(tb, addr, n) },
		"datadog-go": func(tb testing.TB, addr string, n int) client { return newDatadog(tb, addr, n) },
	} {
		t.Run(name, func(t *testing.T) {
			r := newLoopReceiver(t)
			c := mk(t, r.addr(), series)
			for round := 1; round <= 2; round++ {
				c.round()
				c.flush()
				r.wait(t, float64(round*series*benchUpdates))
			}
			r.verify(t, series, 2)
		})
	}
}

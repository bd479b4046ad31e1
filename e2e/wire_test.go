package e2e

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/statsd_exporter/pkg/event"
	"github.com/prometheus/statsd_exporter/pkg/line"
	"github.com/prometheus/statsd_exporter/pkg/mapper"

	"github.com/bpfstatd/bpfstatd/shipper"
)

// exporterParser is statsd_exporter's line parser with the counters it
// reports malformed input to, which must stay at zero.
type exporterParser struct {
	p            *line.Parser
	sampleErrors *prometheus.CounterVec
	samples      prometheus.Counter
	tagErrors    prometheus.Counter
	tags         prometheus.Counter
	log          *slog.Logger
}

func newExporterParser(d shipper.Dialect) *exporterParser {
	p := line.NewParser()
	if d == shipper.Telegraf {
		p.EnableInfluxdbParsing()
	} else {
		p.EnableDogstatsdParsing()
	}
	return &exporterParser{
		p:            p,
		sampleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sample_errors"}, []string{"reason"}),
		samples:      prometheus.NewCounter(prometheus.CounterOpts{Name: "samples"}),
		tagErrors:    prometheus.NewCounter(prometheus.CounterOpts{Name: "tag_errors"}),
		tags:         prometheus.NewCounter(prometheus.CounterOpts{Name: "tags"}),
		log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// parse splits a datagram into lines as statsd_exporter's listener does
// and parses each.
func (p *exporterParser) parse(datagram string) (events event.Events) {
	for _, l := range strings.Split(datagram, "\n") {
		events = append(events, p.p.LineToEvents(l, *p.sampleErrors, p.samples, p.tagErrors, p.tags, p.log)...)
	}
	return events
}

// errors returns every error the parser counted.
func (p *exporterParser) errors() string {
	var errs []string
	if n := testutil.ToFloat64(p.tagErrors); n != 0 {
		errs = append(errs, fmt.Sprintf("%v tag errors", n))
	}
	if testutil.CollectAndCount(p.sampleErrors) != 0 {
		ch := make(chan prometheus.Metric, 16)
		p.sampleErrors.Collect(ch)
		close(ch)
		for m := range ch {
			var pb dto.Metric
			m.Write(&pb)
			errs = append(errs, fmt.Sprintf("%v %s", pb.GetCounter().GetValue(), pb.GetLabel()[0].GetValue()))
		}
	}
	return strings.Join(errs, "; ")
}

// collect keeps every datagram's payload.
type collect struct{ datagrams []string }

func (c *collect) Ship(d shipper.Datagram) {
	c.datagrams = append(c.datagrams, string(d.Bytes()))
	d.Release()
}

// The wire rules, checked independently of the sanitiser's code.
var (
	nameRE     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]{0,199}$`)
	tagKeyRE   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_./-]{0,99}$`)
	tagValueRE = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)
)

// want computes what sanitising raw should give: bytes outside ok become
// '_', a missing leading letter becomes prefix, and the result is cut.
func want(raw string, ok func(byte) bool, prefix string, limit int) string {
	var b strings.Builder
	if raw == "" || !isLetter(raw[0]) {
		b.WriteString(prefix)
	}
	for i := 0; i < len(raw) && b.Len() < limit; i++ {
		c := raw[i]
		if !ok(c) {
			c = '_'
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isAlnum(c byte) bool  { return isLetter(c) || c >= '0' && c <= '9' }
func nameByte(c byte) bool { return isAlnum(c) || c == '_' || c == '.' }
func tagByte(c byte) bool  { return isAlnum(c) || strings.IndexByte("_-./", c) >= 0 }

func wantTag(k, v string) (string, string) {
	key := want(k, tagByte, "t", 100)
	val := want(v, tagByte, "", shipper.MaxTagLen-len(key)-1)
	if v == "" {
		val = shipper.EmptyTagValue
	}
	if val == shipper.OverflowTagValue {
		val += "_"
	}
	return key, val
}

// input is one fuzz case: a metric of each kind with two variable tags
// and a global tag, all from arbitrary bytes.
type input struct {
	dialect            shipper.Dialect
	limit              int
	name               string
	k1, v1, k2, v2, gv string
	count              int64
	gauge, o1, o2      float64
	buckets            []byte
}

// check packs in's metrics, parses every datagram with statsd_exporter's
// parser, and checks that it yields exactly the metrics meant.
func check(t *testing.T, in input) {
	interner, err := shipper.NewInterner(shipper.InternerOptions{Tags: []string{"g:" + in.gv}})
	if err != nil {
		t.Fatal(err)
	}
	base := in.name
	if len(base) > 150 {
		base = base[:150] // leave room for the suffixes within 200
	}
	kinds := []shipper.Kind{shipper.Counter, shipper.Gauge, shipper.Distribution, shipper.Histogram, shipper.Timing}
	metrics := make([]*shipper.Metric, len(kinds))
	for i, k := range kinds {
		metrics[i], err = interner.Register(shipper.MetricSpec{Name: base + "_" + k.String(), Kind: k, TagKeys: []string{in.k1, in.k2}})
		if err != nil {
			t.Fatal(err)
		}
	}
	agg := shipper.NewAggregator(interner, shipper.AggregatorOptions{})
	vals := [][]byte{[]byte(in.v1), []byte(in.v2)}
	key := func(i int) shipper.Key { return metrics[i].Key(vals...) }
	agg.Add(key(0), in.count)
	agg.Set(key(1), in.gauge)
	for _, i := range []int{2, 4} {
		agg.Observe(key(i), in.o1)
		agg.Observe(key(i), in.o2)
	}
	counts := make([]uint64, len(in.buckets))
	for i, c := range in.buckets {
		counts[i] = uint64(c)
	}
	agg.AddBuckets(key(3), counts)

	sink := new(collect)
	p, err := shipper.NewPacker(sink, shipper.PackerOptions{Dialect: in.dialect, MaxPayload: in.limit})
	if err != nil {
		t.Fatal(err)
	}
	agg.Flush(p)
	p.Flush()
	if st := p.Stats(); st.TooLong != 0 {
		t.Fatalf("%d lines too long", st.TooLong)
	}

	parser := newExporterParser(in.dialect)
	var events event.Events
	for _, d := range sink.datagrams {
		if len(d) > in.limit || !strings.HasSuffix(d, "\n") || strings.Contains(d, "\n\n") {
			t.Fatalf("bad datagram %q", d)
		}
		for _, l := range strings.Split(strings.TrimSuffix(d, "\n"), "\n") {
			if strings.HasSuffix(l, "|") || strings.Contains(l, "|#|") || strings.HasSuffix(l, "|#") || strings.Contains(l, "||") {
				t.Fatalf("malformed line %q", l)
			}
		}
		events = append(events, parser.parse(d)...)
	}
	if e := parser.errors(); e != "" {
		t.Fatalf("parser errors: %s\ndatagrams: %q", e, sink.datagrams)
	}

	// The labels every event must carry, and nothing else.
	labels := map[string]string{}
	if in.dialect != shipper.StatsD {
		for _, kv := range [][2]string{{in.k1, in.v1}, {in.k2, in.v2}, {"g", in.gv}} {
			k, v := wantTag(kv[0], kv[1])
			if !tagKeyRE.MatchString(k) || !tagValueRE.MatchString(v) {
				t.Fatalf("tag %q:%q breaks the wire rules", k, v)
			}
			labels[mapper.EscapeMetricName(k)] = v
		}
	}
	byName := map[string][]event.Event{}
	for _, e := range events {
		if !maps(e.Labels(), labels) {
			t.Fatalf("event %s has labels %v, want %v\ndatagrams: %q", e.MetricName(), e.Labels(), labels, sink.datagrams)
		}
		byName[e.MetricName()] = append(byName[e.MetricName()], e)
	}
	for i, k := range kinds {
		name := want(base+"_"+k.String(), nameByte, "m", 200)
		if !nameRE.MatchString(name) || metrics[i].Name() != name {
			t.Fatalf("name %q (registered %q) breaks the wire rules", name, metrics[i].Name())
		}
		got := byName[name]
		delete(byName, name)
		var wantVals []float64
		scale := 1.0
		if k == shipper.Timing || in.dialect == shipper.StatsD && k != shipper.Counter && k != shipper.Gauge {
			scale = 1000 // statsd_exporter reads ms as seconds
		}
		switch k {
		case shipper.Counter:
			if in.count > 0 || in.count < 0 && in.dialect != shipper.StatsdExporter {
				wantVals = []float64{float64(in.count)}
			}
		case shipper.Gauge:
			var v float64 // fold relative and absolute gauge events
			for _, e := range got {
				if g := e.(*event.GaugeEvent); g.GRelative {
					v += g.GValue
				} else {
					v = g.GValue
				}
			}
			if len(got) == 0 || v != in.gauge {
				t.Fatalf("gauge %s: %d events fold to %v, want %v", name, len(got), v, in.gauge)
			}
			continue
		case shipper.Distribution, shipper.Timing:
			wantVals = []float64{in.o1 / scale, in.o2 / scale}
		case shipper.Histogram:
			for i, c := range in.buckets {
				for range c {
					wantVals = append(wantVals, shipper.BucketMidpoint(i)/scale)
				}
			}
		}
		var gotVals []float64
		for _, e := range got {
			gotVals = append(gotVals, e.Value())
		}
		slices.Sort(gotVals)
		slices.Sort(wantVals)
		if !slices.Equal(gotVals, wantVals) {
			t.Fatalf("%s %s: values %v, want %v\ndatagrams: %q", k, name, gotVals, wantVals, sink.datagrams)
		}
	}
	if len(byName) != 0 {
		t.Fatalf("extra metrics: %v", byName)
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// FuzzWire sends arbitrary names, tag keys and tag values, and values of
// every kind, through the sanitiser and packer of every dialect, and parses
// every datagram with statsd_exporter's line parser: it must yield exactly
// the metrics meant, with no extra metric, field or tag, and no parse error.
func FuzzWire(f *testing.F) {
	type seed struct {
		name, k1, v1, k2, v2, gv string
		count                    int64
		gauge, o1, o2            float64
		buckets                  []byte
	}
	for _, s := range []seed{
		{"host.process.exec", "comm", "bash", "failed", "false", "prod", 3, 1.5, 2, 3.25, []byte{1, 2, 3}},
		{"x\ny:1|c", "k|#", "v\nevil:1|c|#a:b", "k2,", "a,b:c@0.1|#", "g\r\n", -7, -2, -1, 1e300, []byte{0, 0, 9}},
		{"", "", "", "", "", "", math.MinInt64, -1e-300, 0, math.MaxFloat64, []byte{255, 255}},
		{"9lives ü", "1k", shipper.OverflowTagValue, "=", "a=b", "x y", math.MaxInt64, 0.1, -0.5, 12345.678, nil},
		{strings.Repeat("n", 300), strings.Repeat("k", 150), strings.Repeat("v", 300), "k", "v", "", 1, 1e21, 5e-324, -0.0, []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{"a:b|c", "k:v", "|@0.5", "#", "|c:x", "|T123", 5, 3, 1, 2, []byte{0, 1}},
	} {
		for d := range uint8(5) {
			f.Add(d, d, s.name, s.k1, s.v1, s.k2, s.v2, s.gv, s.count, s.gauge, s.o1, s.o2, s.buckets)
		}
	}
	f.Fuzz(func(t *testing.T, dialect, limit uint8, name, k1, v1, k2, v2, gv string, count int64, gauge, o1, o2 float64, buckets []byte) {
		for _, v := range []float64{gauge, o1, o2} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Skip("not a value")
			}
		}
		if len(buckets) > 65 {
			buckets = buckets[:65]
		}
		limits := []int{shipper.UDPPayload, shipper.UDPPayloadIPv6, shipper.UnixgramPayload}
		check(t, input{
			dialect: shipper.Dialect(dialect % 5), limit: limits[int(limit)%len(limits)],
			name: name, k1: k1, v1: v1, k2: k2, v2: v2, gv: gv,
			count: count, gauge: gauge, o1: o1, o2: o2, buckets: buckets,
		})
	})
}

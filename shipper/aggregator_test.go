package shipper

import (
	"strconv"
	"strings"
	"testing"
)

func TestAggregatorKinds(t *testing.T) {
	in, agg, p, sink := setup(t, DogStatsD, UDPPayload, InternerOptions{})
	c := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"k"}})
	g := mustRegister(t, in, MetricSpec{Name: "g", Kind: Gauge})
	d := mustRegister(t, in, MetricSpec{Name: "d", Kind: Distribution})
	h := mustRegister(t, in, MetricSpec{Name: "h", Kind: Histogram})
	zero := mustRegister(t, in, MetricSpec{Name: "zero"})

	agg.Add(c.Key([]byte("x")), 2)
	agg.Add(c.Key([]byte("x")), 3)
	agg.Add(zero.Key(), 1)
	agg.Add(zero.Key(), -1)
	agg.Set(g.Key(), 1)
	agg.Set(g.Key(), 7.5)
	agg.Observe(d.Key(), 1)
	agg.Observe(d.Key(), 2.5)
	agg.AddBuckets(h.Key(), []uint64{0, 4, 0, 2, 1})
	agg.Flush(p)
	p.Flush()
	// Buckets 1 (×4, midpoint 1), 3 (×2, midpoint 6) and 4 (×1, midpoint 12).
	want := "c:5|c|#k:x\ng:7.5|g\nd:1:2.5|d\nh:12|h\nh:6|h|@0.5\nh:1|h|@0.25\n"
	if got := sink.all(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// A new interval starts empty.
	sink.datagrams = nil
	agg.Flush(p)
	p.Flush()
	if got := sink.all(); got != "" {
		t.Errorf("second flush: %q", got)
	}
}

func TestAggregatorOverflowBuckets(t *testing.T) {
	in, _, p, sink := setup(t, DogStatsD, UDPPayload, InternerOptions{})
	agg := NewAggregator(in, AggregatorOptions{MaxSamples: 2})
	d := mustRegister(t, in, MetricSpec{Name: "d", Kind: Distribution})
	k := d.Key()
	for _, v := range []float64{1, 2, 100, 110, 120, -4, -6} {
		agg.Observe(k, v)
	}
	agg.Flush(p)
	p.Flush()
	// 1 and 2 exact; 100, 110, 120 share bucket 7 (mean 110); -4 and -6 mean -5.
	want := "d:1:2|d\nd:-5|d|@0.5\nd:110|d|@0.3333333333333333\n"
	if got := sink.all(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestAggregatorPriorityAndShed(t *testing.T) {
	in, agg, p, sink := setup(t, DogStatsD, UDPPayload, InternerOptions{})
	low := mustRegister(t, in, MetricSpec{Name: "low", Priority: Low, TagKeys: []string{"k"}})
	norm := mustRegister(t, in, MetricSpec{Name: "norm"})
	crit := mustRegister(t, in, MetricSpec{Name: "crit", Priority: Critical})
	keys := []Key{low.Key([]byte("0")), low.Key([]byte("1")), low.Key([]byte("2")), low.Key([]byte("3"))}
	agg.SetShed(2)
	var sums [4]int64
	for range 4 {
		agg.Add(norm.Key(), 1)
		agg.Add(crit.Key(), 1)
		for _, k := range keys {
			agg.Add(k, 1)
		}
		sink.datagrams = nil
		agg.Flush(p)
		p.Flush()
		if len(sink.datagrams) != 3 || !strings.HasPrefix(sink.datagrams[0], "crit:") || !strings.HasPrefix(sink.datagrams[2], "low:") {
			t.Fatalf("datagrams not by priority: %q", sink.datagrams)
		}
		if n := strings.Count(sink.datagrams[2], "\n"); n != 2 {
			t.Errorf("shed 2 shipped %d of 4 low series", n)
		}
		for _, l := range splitLines(sink.datagrams[2]) {
			sums[l[len(l)-1]-'0'] += int64(l[4] - '0')
		}
	}
	// Deferred values were kept: after 4 intervals every series shipped 4.
	agg.SetShed(1)
	sink.datagrams = nil
	agg.Flush(p)
	p.Flush()
	for _, l := range splitLines(sink.all()) {
		sums[l[len(l)-1]-'0'] += int64(l[4] - '0')
	}
	if sums != [4]int64{4, 4, 4, 4} {
		t.Errorf("low sums %v", sums)
	}
	if agg.Stats().Deferred != 8 {
		t.Errorf("deferred %d", agg.Stats().Deferred)
	}
}

func TestAggregatorInvalid(t *testing.T) {
	in, agg, _, _ := setup(t, DogStatsD, UDPPayload, InternerOptions{})
	g := mustRegister(t, in, MetricSpec{Name: "g", Kind: Gauge})
	inf := 1.0
	for range 1100 {
		inf *= 2
	}
	agg.Set(g.Key(), inf)
	agg.Observe(g.Key(), inf-inf)
	if agg.Stats().Invalid != 2 {
		t.Errorf("invalid %d", agg.Stats().Invalid)
	}
}

func TestAggregateAllocs(t *testing.T) {
	in, agg, _, _ := setup(t, DogStatsD, UDPPayload, InternerOptions{})
	p, _ := NewPacker(discard{}, PackerOptions{})
	c := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"comm"}})
	d := mustRegister(t, in, MetricSpec{Name: "d", Kind: Distribution})
	comm := []byte("bash")
	round := func() {
		agg.Add(c.Key(comm), 1)
		agg.Observe(d.Key(), 3)
		agg.AddBuckets(d.Key(), []uint64{1, 2})
	}
	round()
	agg.Flush(p)
	p.Flush()
	if n := testing.AllocsPerRun(1000, round); n != 0 {
		t.Errorf("aggregating known keys: %v allocs", n)
	}
	if n := testing.AllocsPerRun(100, func() { round(); agg.Flush(p); p.Flush() }); n != 0 {
		t.Errorf("aggregate and flush: %v allocs", n)
	}
}

func BenchmarkAggregate(b *testing.B) {
	in, agg, _, _ := setup(b, DogStatsD, UDPPayload, InternerOptions{})
	c := mustRegister(b, in, MetricSpec{Name: "host.process.exec", TagKeys: []string{"comm"}})
	k := c.Key([]byte("bash"))
	b.Run("key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			agg.Add(k, 1)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
	})
	comm := []byte("kworker/u8:2")
	b.Run("lookup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			agg.Add(c.Key(comm), 1)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
	})
}

// BenchmarkFlush packs 10,000 counter series with two tags each into
// datagrams: the cost per line of a whole flush, cache misses included.
func BenchmarkFlush(b *testing.B) {
	in, _ := NewInterner(InternerOptions{Tags: []string{"env:prod"}})
	c := mustRegister(b, in, MetricSpec{Name: "host.process.exec", TagKeys: []string{"comm"}})
	agg := NewAggregator(in, AggregatorOptions{})
	p, _ := NewPacker(discard{}, PackerOptions{})
	var keys []Key
	for i := range 10000 {
		keys = append(keys, c.Key([]byte("proc-"+strconv.Itoa(i))))
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, k := range keys {
			agg.Add(k, 12345)
		}
		agg.Flush(p)
		p.Flush()
	}
	b.ReportMetric(float64(b.N*len(keys))/b.Elapsed().Seconds(), "lines/s")
}

// TestAggregatorEvictIdle: series idle past IdleIntervals are evicted, their
// budget goes to new names instead of the overflow series, their keys are
// reused, and lines of a reused key carry the new tags.
func TestAggregatorEvictIdle(t *testing.T) {
	in, _ := NewInterner(InternerOptions{MaxSeriesPerMetric: 2})
	agg := NewAggregator(in, AggregatorOptions{IdleIntervals: 2})
	m := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"comm"}})
	static := mustRegister(t, in, MetricSpec{Name: "s"})
	sink := new(collect)
	p, _ := NewPacker(sink, PackerOptions{})
	flush := func() string {
		sink.datagrams = nil
		agg.Flush(p)
		p.Flush()
		return sink.all()
	}
	a := m.Key([]byte("a"))
	agg.Add(a, 1)
	agg.Add(m.Key([]byte("b")), 1)
	agg.Add(static.Key(), 1)
	flush()
	for range 2 {
		agg.Add(m.Key([]byte("b")), 1) // b stays busy, a goes idle
		flush()
	}
	if in.Stats().Evicted != 0 {
		t.Fatal("evicted too early")
	}
	agg.Add(m.Key([]byte("b")), 1)
	flush() // a idle for 3 flushes
	if st := in.Stats(); st.Evicted != 1 || st.Series != 2 {
		t.Fatalf("stats %+v", st)
	}
	c := m.Key([]byte("c"))
	if c != a {
		t.Errorf("key %d not reused, got %d", a, c)
	}
	agg.Add(c, 5)
	if got := flush(); got != "c:5|c|#comm:c\n" { // not comm:a, the key's old tags
		t.Errorf("after reuse: %q", got)
	}
	if in.Stats().Overflowed != 0 {
		t.Error("a new name overflowed although a series was evicted")
	}
	// The static series is never evicted, nor the overflow series.
	for range 5 {
		agg.Add(m.Key([]byte("x")), 1)
		agg.Add(m.Key([]byte("y")), 1)
		flush()
	}
	if in.Metric(static.Key()) == nil {
		t.Error("static series evicted")
	}
	if m.Key([]byte("a")) == noKey {
		t.Error("no key")
	}
}

func TestBucketMidpoint(t *testing.T) {
	for i, want := range map[int]float64{-1: 0, 0: 0, 1: 1, 2: 3, 3: 6, 11: 1536, 64: 3 << 62} {
		if got := BucketMidpoint(i); got != want {
			t.Errorf("BucketMidpoint(%d) = %g, want %g", i, got, want)
		}
	}
}

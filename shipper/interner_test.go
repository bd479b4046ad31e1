package shipper

import (
	"strconv"
	"testing"
)

func TestInternerKeys(t *testing.T) {
	in, err := NewInterner(InternerOptions{Tags: []string{"env:prod"}})
	if err != nil {
		t.Fatal(err)
	}
	exec := mustRegister(t, in, MetricSpec{Name: "host.process.exec", TagKeys: []string{"comm"}})
	two := mustRegister(t, in, MetricSpec{Name: "two", Kind: Gauge, TagKeys: []string{"a", "b"}, Tags: []string{"c:d"}})
	static := mustRegister(t, in, MetricSpec{Name: "static", Priority: Critical})

	sh := exec.Key([]byte("sh"))
	if exec.Key([]byte("sh")) != sh {
		t.Error("same value, different key")
	}
	if got := in.Tags(sh); got != "comm:sh,env:prod" {
		t.Errorf("tags %q", got)
	}
	// Spellings that sanitise alike share the series.
	if a, b := exec.Key([]byte("a|b")), exec.Key([]byte("a,b")); a != b || in.Tags(a) != "comm:a_b,env:prod" {
		t.Errorf("a|b and a,b: keys %d %d, tags %q", a, b, in.Tags(a))
	}
	// Raw keys of several values cannot collide by concatenation.
	k1, k2 := two.Key([]byte("ab"), []byte("c")), two.Key([]byte("a"), []byte("bc"))
	if k1 == k2 {
		t.Error("ab,c and a,bc share a key")
	}
	if got := in.Tags(k1); got != "a:ab,b:c,c:d,env:prod" {
		t.Errorf("tags %q", got)
	}
	if got := in.Tags(static.Key()); got != "env:prod" {
		t.Errorf("static tags %q", got)
	}
	if _, err := in.Register(MetricSpec{Name: "static"}); err == nil {
		t.Error("registered a name twice")
	}
	if _, err := in.Register(MetricSpec{Name: "x", Tags: []string{"bare"}}); err == nil {
		t.Error("registered a bare tag")
	}
	if _, err := NewInterner(InternerOptions{Tags: []string{":v"}}); err == nil {
		t.Error("accepted an empty tag key")
	}
}

func TestInternerBudget(t *testing.T) {
	in, err := NewInterner(InternerOptions{MaxSeries: 6, MaxSeriesPerMetric: 4})
	if err != nil {
		t.Fatal(err)
	}
	a := mustRegister(t, in, MetricSpec{Name: "a", TagKeys: []string{"k"}})
	b := mustRegister(t, in, MetricSpec{Name: "b", TagKeys: []string{"k"}, MaxSeries: 100})
	agg := NewAggregator(in, AggregatorOptions{})
	var want int64
	for i := range 1000 {
		v := []byte(strconv.Itoa(i))
		agg.Add(a.Key(v), 1)
		agg.Add(b.Key(v), 1)
		want++
	}
	st := in.Stats()
	// a: 4 series + overflow; b: 2 series (global budget 6) + overflow.
	if st.Series != 4+1+2+1 {
		t.Errorf("series %d, want 8", st.Series)
	}
	if st.Overflowed != 2*1000-6 {
		t.Errorf("overflowed %d", st.Overflowed)
	}
	if got := in.Tags(a.Key([]byte("999"))); got != "k:"+OverflowTagValue {
		t.Errorf("overflow tags %q", got)
	}
	// Totals stay exact.
	sink := new(collect)
	p, _ := NewPacker(sink, PackerOptions{MaxPayload: 8192})
	agg.Flush(p)
	p.Flush()
	sums := map[string]int64{}
	for _, l := range splitLines(sink.all()) {
		name, rest, _ := cut(l, ":")
		v, _, _ := cut(rest, "|")
		n, _ := strconv.ParseInt(v, 10, 64)
		sums[name] += n
	}
	if sums["a"] != want || sums["b"] != want {
		t.Errorf("sums %v, want %d each", sums, want)
	}
}

// TestInternerFloodMemory checks that a flood of new values past the budget
// neither allocates per lookup nor grows the interner.
func TestInternerFloodMemory(t *testing.T) {
	in, _ := NewInterner(InternerOptions{MaxSeriesPerMetric: 8})
	m := mustRegister(t, in, MetricSpec{Name: "m", TagKeys: []string{"k"}})
	buf := []byte("value-00000000")
	i := 0
	next := func() []byte {
		i++
		return strconv.AppendInt(buf[:6], int64(i), 10)
	}
	for range 100 {
		m.Key(next())
	}
	if n := testing.AllocsPerRun(1000, func() { m.Key(next()) }); n != 0 {
		t.Errorf("overflowing lookup: %v allocs", n)
	}
	if n := in.Len(); n != 9 {
		t.Errorf("series %d, want 9", n)
	}
	// Spellings of an existing series past the raw cache: no growth either.
	if m.raw.len() > rawPerSeries*8 {
		t.Errorf("raw cache %d", m.raw.len())
	}
}

func TestKeyAllocs(t *testing.T) {
	in, _ := NewInterner(InternerOptions{})
	m := mustRegister(t, in, MetricSpec{Name: "m", TagKeys: []string{"k"}})
	m2 := mustRegister(t, in, MetricSpec{Name: "m2", TagKeys: []string{"a", "b"}})
	v, w := []byte("bash"), []byte("x")
	m.Key(v)
	m2.Key(v, w)
	if n := testing.AllocsPerRun(1000, func() { m.Key(v); m2.Key(v, w) }); n != 0 {
		t.Errorf("known key lookup: %v allocs", n)
	}
}

func BenchmarkKeyLookup(b *testing.B) {
	in, _ := NewInterner(InternerOptions{})
	m := mustRegister(b, in, MetricSpec{Name: "m", TagKeys: []string{"comm"}})
	v := []byte("kworker/u8:2")
	m.Key(v)
	b.ReportAllocs()
	for b.Loop() {
		m.Key(v)
	}
}

// BenchmarkIntern measures a lookup of a value never seen before: while
// the budget has room (a new series), and once it is full (the overflow
// series, no allocation).
func BenchmarkIntern(b *testing.B) {
	vals := make([][]byte, 1<<16)
	for i := range vals {
		vals[i] = []byte("proc-" + strconv.Itoa(i))
	}
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		var in *Interner
		var m *Metric
		i := len(vals)
		for b.Loop() {
			if i == len(vals) {
				b.StopTimer()
				in, _ = NewInterner(InternerOptions{MaxSeries: len(vals), MaxSeriesPerMetric: len(vals)})
				m = mustRegister(b, in, MetricSpec{Name: "m", TagKeys: []string{"comm"}})
				i = 0
				b.StartTimer()
			}
			m.Key(vals[i])
			i++
		}
	})
	b.Run("overflow", func(b *testing.B) {
		in, _ := NewInterner(InternerOptions{MaxSeriesPerMetric: 1})
		m := mustRegister(b, in, MetricSpec{Name: "m", TagKeys: []string{"comm"}})
		m.Key([]byte("first"))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			m.Key(vals[i&(len(vals)-1)])
			i++
		}
	})
}

package shipper

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// commID returns name as the kernel stores a comm: NUL-padded to 16 bytes.
func commID(name string) [16]byte {
	var id [16]byte
	copy(id[:], name)
	return id
}

// TestKeyCacheEvictExact runs a random workload through a small budget and
// a short IdleIntervals, so that series are evicted, keys reused by other
// names and names overflow, in a cache small enough to collide: every
// cached key equals Metric.Key's, and what ships per name equals what was
// added.
func TestKeyCacheEvictExact(t *testing.T) {
	for _, slots := range []int{4, 1024} {
		t.Run(strconv.Itoa(slots), func(t *testing.T) { testKeyCacheEvictExact(t, slots) })
	}
}

func testKeyCacheEvictExact(t *testing.T, slots int) {
	in, _ := NewInterner(InternerOptions{MaxSeriesPerMetric: 6})
	agg := NewAggregator(in, AggregatorOptions{IdleIntervals: 2})
	m := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"comm"}})
	other := mustRegister(t, in, MetricSpec{Name: "o", TagKeys: []string{"comm"}}) // takes reused keys too
	sink := new(collect)
	p, _ := NewPacker(sink, PackerOptions{})
	c := NewKeyCache(m, slots)

	names := make([]string, 24)
	for i := range names {
		names[i] = "proc-" + strconv.Itoa(i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]int64{}
	got := map[string]int64{}
	for round := range 200 {
		// A few busy names, and a changing set of others that come and go.
		active := names[:3+round%len(names[3:])]
		for range 50 {
			name := active[rng.IntN(len(active))]
			if rng.IntN(4) == 0 {
				name = names[rng.IntN(3)]
			}
			id := commID(name)
			k := c.Key(&id)
			if mk := m.Key([]byte(name)); k != mk {
				t.Fatalf("round %d: cache gave key %d for %s, Metric.Key %d", round, k, name, mk)
			}
			n := int64(rng.IntN(9) + 1)
			agg.Add(k, n)
			want[name] += n
			if rng.IntN(8) == 0 {
				agg.Add(other.Key([]byte(name+"-o")), 1)
			}
		}
		sink.datagrams = nil
		agg.Flush(p)
		p.Flush()
		for _, line := range splitLines(sink.all()) {
			if !strings.HasPrefix(line, "c:") {
				continue
			}
			val, tags, _ := strings.Cut(strings.TrimPrefix(line, "c:"), "|c|#comm:")
			v, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				t.Fatalf("line %q", line)
			}
			got[tags] += v
		}
	}
	st := in.Stats()
	if st.Evicted == 0 || st.Overflowed == 0 {
		t.Fatalf("the workload did not exercise eviction and overflow: %+v", st)
	}
	var total, overflow int64
	for name, n := range want {
		total += n
		if got[name] > n {
			t.Errorf("%s: shipped %d, added %d", name, got[name], n)
		}
		overflow += n - got[name]
	}
	if got[OverflowTagValue] != overflow {
		t.Errorf("overflow series shipped %d, names short of %d", got[OverflowTagValue], overflow)
	}
	t.Logf("%d added, %d via the overflow series; interner %+v", total, overflow, st)
}

// TestKeyCacheStale: a key kept for a name whose series was evicted and
// reused by another name is not returned for the old name.
func TestKeyCacheStale(t *testing.T) {
	in, _ := NewInterner(InternerOptions{})
	agg := NewAggregator(in, AggregatorOptions{IdleIntervals: 1})
	m := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"comm"}})
	p, _ := NewPacker(new(collect), PackerOptions{})
	c := NewKeyCache(m, 64)
	a := commID("a")
	ka := c.Key(&a)
	agg.Add(ka, 1)
	for range 3 {
		agg.Flush(p)
	}
	if in.Stats().Evicted != 1 {
		t.Fatalf("a not evicted: %+v", in.Stats())
	}
	if kb := m.Key([]byte("b")); kb != ka {
		t.Fatalf("key %d not reused by b (got %d)", ka, kb)
	}
	if k := c.Key(&a); k == ka || in.Tags(k) != "comm:a" {
		t.Errorf("a looked up as key %d, tags %q; b has key %d", k, in.Tags(k), ka)
	}
}

func TestKeyCacheAllocs(t *testing.T) {
	in, _ := NewInterner(InternerOptions{})
	m := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"comm"}})
	c := NewKeyCache(m, 64)
	id := commID("bsload")
	c.Key(&id)
	if n := testing.AllocsPerRun(1000, func() { c.Key(&id) }); n != 0 {
		t.Errorf("%v allocations per cached lookup", n)
	}
}

// BenchmarkKeyCache compares a cached lookup with Metric.Key's string map.
func BenchmarkKeyCache(b *testing.B) {
	in, _ := NewInterner(InternerOptions{})
	m := mustRegister(b, in, MetricSpec{Name: "c", TagKeys: []string{"comm"}})
	names := []string{"bsload", "kworker/0:1", "systemd-journal", "go", "sshd", "containerd-shim", "bash", "node"}
	ids := make([][16]byte, len(names))
	for i, n := range names {
		ids[i] = commID(n)
	}
	b.Run("cache", func(b *testing.B) {
		c := NewKeyCache(m, 1024)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c.Key(&ids[i%len(ids)])
			i++
		}
	})
	b.Run("metric", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			id := &ids[i%len(ids)]
			m.Key(id[:len(names[i%len(ids)])])
			i++
		}
	})
}

// TestKeyCacheName: the tag value is the name up to its first NUL, or all
// 16 bytes; what follows a NUL does not make another series.
func TestKeyCacheName(t *testing.T) {
	in, _ := NewInterner(InternerOptions{})
	m := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"comm"}})
	c := NewKeyCache(m, 64)
	for _, tc := range []struct{ raw, value string }{
		{"ab\x00zz", "ab"}, {"ab\x00yy", "ab"}, {"0123456789abcdef", "0123456789abcdef"}, {"", ""},
	} {
		id := commID(tc.raw)
		if k, want := c.Key(&id), m.Key([]byte(tc.value)); k != want {
			t.Errorf("%q: key %d, Metric.Key(%q) %d", tc.raw, k, tc.value, want)
		}
	}
}

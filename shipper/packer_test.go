package shipper

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestPackerLimits(t *testing.T) {
	for _, limit := range []int{MinPayload, 100, UDPPayloadIPv6, UDPPayload} {
		for d := range numDialects {
			in, agg, p, sink := setup(t, d, limit, InternerOptions{Tags: []string{"env:prod"}})
			c := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"comm"}})
			h := mustRegister(t, in, MetricSpec{Name: "h", Kind: Distribution, TagKeys: []string{"comm"}})
			g := mustRegister(t, in, MetricSpec{Name: "g", Kind: Gauge, TagKeys: []string{"comm"}})
			for i := range 300 {
				v := []byte("p" + strconv.Itoa(i))
				agg.Add(c.Key(v), int64(i+1))
				agg.Set(g.Key(v), float64(-i))
				for j := range 5 {
					agg.Observe(h.Key(v), float64(j*1000+i))
				}
			}
			agg.Flush(p)
			p.Flush()
			st := p.Stats()
			if st.TooLong != 0 {
				t.Errorf("%v/%d: %d lines too long", d, limit, st.TooLong)
			}
			lines := 0
			for _, dg := range sink.datagrams {
				if len(dg) > limit || len(dg) == 0 || dg[len(dg)-1] != '\n' {
					t.Fatalf("%v/%d: bad datagram %q", d, limit, dg)
				}
				for _, l := range splitLines(dg) {
					lines++
					if strings.HasSuffix(l, "|") || strings.Contains(l, "|#|") || strings.HasSuffix(l, "|#") || strings.Contains(l, "||") {
						t.Fatalf("%v: malformed line %q", d, l)
					}
				}
			}
			if uint64(lines) != st.Lines || lines != sink.lines {
				t.Errorf("%v/%d: %d lines on the wire, packer says %d, datagrams say %d", d, limit, lines, st.Lines, sink.lines)
			}
		}
	}
}

func TestPackerTooLong(t *testing.T) {
	in, agg, p, sink := setup(t, DogStatsD, MinPayload, InternerOptions{})
	c := mustRegister(t, in, MetricSpec{Name: strings.Repeat("n", 70)})
	ok := mustRegister(t, in, MetricSpec{Name: "ok"})
	agg.Add(c.Key(), 1)
	agg.Add(ok.Key(), 1)
	agg.Flush(p)
	p.Flush()
	if got := sink.all(); got != "ok:1|c\n" {
		t.Errorf("got %q", got)
	}
	if st := p.Stats(); st.TooLong != 1 || st.Lines != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestPackerRejects(t *testing.T) {
	in, agg, p, sink := setup(t, StatsdExporter, UDPPayload, InternerOptions{})
	c := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"k"}})
	agg.Add(c.Key([]byte("neg")), -2)
	agg.Add(c.Key([]byte("pos")), 2)
	agg.Flush(p)
	p.Flush()
	if got := sink.all(); got != "c:2|c|#k:pos\n" || p.Stats().Rejected != 1 {
		t.Errorf("got %q, rejected %d", got, p.Stats().Rejected)
	}
}

// TestPackerCounters packs counters whose lines grow and shrink with their
// value, around the size copyBlock copies, up to the payload limit.
func TestPackerCounters(t *testing.T) {
	vals := []int64{0, 7, -7, 12345, 99, 100, -100000, math.MaxInt64, 1, math.MinInt64, 10, 0}
	for _, limit := range []int{MinPayload, UDPPayload} {
		for _, name := range []string{"c", strings.Repeat("n", 30), strings.Repeat("n", 44), strings.Repeat("n", 60)} {
			in, _, p, sink := setup(t, DogStatsD, limit, InternerOptions{})
			c := mustRegister(t, in, MetricSpec{Name: name, TagKeys: []string{"k"}})
			k := c.Key([]byte("v"))
			var want []string
			for range 20 {
				for _, v := range vals {
					p.counter(k, &in.series[k], v)
					if l := name + ":" + strconv.FormatInt(v, 10) + "|c|#k:v\n"; len(l) <= limit {
						want = append(want, l)
					}
				}
			}
			p.Flush()
			for _, dg := range sink.datagrams {
				if len(dg) > limit {
					t.Fatalf("%d/%s: datagram of %d bytes", limit, name, len(dg))
				}
			}
			if got := sink.all(); got != strings.Join(want, "") {
				t.Errorf("%d/%s: got\n%s\nwant\n%s", limit, name, got, strings.Join(want, ""))
			}
			if st := p.Stats(); st.Lines != uint64(len(want)) || st.TooLong != uint64(20*len(vals)-len(want)) {
				t.Errorf("%d/%s: stats %+v for %d lines", limit, name, st, len(want))
			}
		}
	}
}

func TestAppendRate(t *testing.T) {
	for n := uint64(2); n < 200000; n++ {
		b := appendRate(nil, n)
		r, err := strconv.ParseFloat(string(b[2:]), 64)
		if err != nil || int(1/r) != int(n) {
			t.Fatalf("n=%d: rate %s reads back as %v observations", n, b, 1/r)
		}
	}
	if b := appendRate(nil, 1); len(b) != 0 {
		t.Errorf("rate for 1: %q", b)
	}
}

func TestPackAllocs(t *testing.T) {
	in, _, p, _ := setup(t, DogStatsD, UDPPayload, InternerOptions{Tags: []string{"env:prod"}})
	c := mustRegister(t, in, MetricSpec{Name: "host.process.exec", TagKeys: []string{"comm"}})
	k := c.Key([]byte("bash"))
	s := &in.series[k]
	for range 100 {
		p.counter(k, s, 12345)
	}
	if n := testing.AllocsPerRun(10000, func() { p.counter(k, s, 12345) }); n != 0 {
		t.Errorf("packing a line: %v allocs", n)
	}
}

func BenchmarkPackLine(b *testing.B) {
	// baseline: the same line appended with strconv into a reused buffer,
	// with no packing at all.
	b.Run("baseline", func(b *testing.B) {
		buf := make([]byte, 0, UDPPayload+512)
		b.ReportAllocs()
		for b.Loop() {
			if len(buf) > UDPPayload {
				buf = buf[:0]
			}
			buf = append(buf, "host.process.exec:"...)
			buf = strconv.AppendInt(buf, 12345, 10)
			buf = append(buf, "|c|#comm:bash,env:prod\n"...)
		}
	})
	for _, d := range []Dialect{DogStatsD, Telegraf} {
		b.Run(d.String(), func(b *testing.B) {
			in, _ := NewInterner(InternerOptions{Tags: []string{"env:prod"}})
			c := mustRegister(b, in, MetricSpec{Name: "host.process.exec", TagKeys: []string{"comm"}})
			p, _ := NewPacker(discard{}, PackerOptions{Dialect: d})
			k := c.Key([]byte("bash"))
			s := &in.series[k]
			p.counter(k, s, 1)
			b.ReportAllocs()
			for b.Loop() {
				p.counter(k, s, 12345)
			}
		})
	}
}

type discard struct{}

func (discard) Ship(d Datagram) { d.Release() }

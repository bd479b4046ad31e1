package shipper

import (
	"strings"
	"testing"
)

// collect is a Sink that keeps every datagram's payload.
type collect struct {
	datagrams []string
	lines     int
}

func (c *collect) Ship(d Datagram) {
	c.datagrams = append(c.datagrams, string(d.Bytes()))
	c.lines += d.Lines
	d.Release()
}

func (c *collect) all() string { return strings.Join(c.datagrams, "") }

// setup returns an interner, aggregator and packer of dialect d writing to
// a collect sink.
func setup(t testing.TB, d Dialect, limit int, opts InternerOptions) (*Interner, *Aggregator, *Packer, *collect) {
	t.Helper()
	in, err := NewInterner(opts)
	if err != nil {
		t.Fatal(err)
	}
	sink := new(collect)
	p, err := NewPacker(sink, PackerOptions{Dialect: d, MaxPayload: limit})
	if err != nil {
		t.Fatal(err)
	}
	return in, NewAggregator(in, AggregatorOptions{}), p, sink
}

func mustRegister(t testing.TB, in *Interner, spec MetricSpec) *Metric {
	t.Helper()
	m, err := in.Register(spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func cut(s, sep string) (string, string, bool) { return strings.Cut(s, sep) }

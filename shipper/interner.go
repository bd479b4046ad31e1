package shipper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Key is a small handle for one series: a metric and the values of its
// variable tags. Keys are dense, from 0 up to [Interner.Len].
type Key uint32

// noKey marks a series that does not exist yet.
const noKey = ^Key(0)

// InternerOptions configure an [Interner]. The zero value works.
type InternerOptions struct {
	// MaxSeries bounds the series of all metrics; zero means
	// [DefaultMaxSeries].
	MaxSeries int
	// MaxSeriesPerMetric bounds the series of each metric unless its
	// [MetricSpec] says otherwise; zero means [DefaultMaxSeriesPerMetric].
	MaxSeriesPerMetric int
	// Tags are "key:value" tags added to every metric, sanitised.
	Tags []string
}

// InternerStats count what an [Interner] holds and refused.
type InternerStats struct {
	Metrics int // registered metrics
	Series  int // series, including overflow series
	// Overflowed counts lookups that found no series and no room for a new
	// one, and so went to their metric's overflow series.
	Overflowed uint64
	// Evicted counts idle series removed (see
	// [AggregatorOptions.IdleIntervals]).
	Evicted uint64
}

// Interner maps metrics and the raw values of their variable tags, such as
// process names, to [Key] handles. Names and tags are sanitised once, when
// first seen; looking up values seen before does not allocate. A
// cardinality budget bounds the series per metric and overall: values past
// it map to an overflow series whose variable tags read
// [OverflowTagValue], so totals stay exact and memory bounded.
//
// An Interner is not safe for concurrent use: one goroutine at a time may
// register metrics and look up keys, usually the one that also feeds the
// [Aggregator].
type Interner struct {
	maxSeries int
	perMetric int
	global    string // ",k:v" for each global tag
	names     map[string]bool
	series    []series
	free      []Key // keys of evicted series, for reuse
	total     int
	stats     InternerStats
	scratch   []byte // raw key of several values
	canonBuf  []byte // sanitised tags being looked up
}

// series is what the packer needs to write a series' lines.
type series struct {
	m     *Metric // nil once evicted
	tags  string  // "k:v,k:v": variable, then the metric's, then global tags
	canon string  // the variable tags alone, its key in m.canon
	gen   uint32  // times the key was reused, for caches keyed by Key
}

// NewInterner returns an empty Interner.
func NewInterner(opts InternerOptions) (*Interner, error) {
	in := &Interner{
		maxSeries: opts.MaxSeries,
		perMetric: opts.MaxSeriesPerMetric,
		names:     make(map[string]bool),
	}
	if in.maxSeries <= 0 {
		in.maxSeries = DefaultMaxSeries
	}
	if in.perMetric <= 0 {
		in.perMetric = DefaultMaxSeriesPerMetric
	}
	global, err := appendTags(nil, opts.Tags)
	if err != nil {
		return nil, fmt.Errorf("create interner: %w", err)
	}
	in.global = string(global)
	return in, nil
}

// appendTags appends ",k:v" for each "key:value" tag, sanitised.
func appendTags(dst []byte, tags []string) ([]byte, error) {
	for _, t := range tags {
		k, v, ok := strings.Cut(t, ":")
		if !ok || k == "" {
			return nil, fmt.Errorf("tag %q is not key:value", t)
		}
		dst = appendTag(append(dst, ','), []byte(k), []byte(v))
	}
	return dst, nil
}

// Register adds a metric. Its name must not be registered already.
func (in *Interner) Register(spec MetricSpec) (*Metric, error) {
	if spec.Kind >= numKinds {
		return nil, fmt.Errorf("register metric %q: unknown kind %d", spec.Name, spec.Kind)
	}
	if spec.Name == "" {
		return nil, errors.New("register metric: empty name")
	}
	name := string(AppendName(nil, []byte(spec.Name)))
	if in.names[name] {
		return nil, fmt.Errorf("register metric %q: already registered", name)
	}
	constTags, err := appendTags(nil, spec.Tags)
	if err != nil {
		return nil, fmt.Errorf("register metric %q: %w", name, err)
	}
	m := &Metric{
		in:        in,
		name:      name,
		kind:      spec.Kind,
		prio:      min(max(spec.Priority, Low), Critical),
		keepZero:  spec.KeepZero,
		constTags: string(constTags) + in.global,
		budget:    budget{limit: spec.MaxSeries, global: &in.total, max: in.maxSeries},
		static:    noKey,
		overflow:  noKey,
	}
	if m.budget.limit <= 0 {
		m.budget.limit = in.perMetric
	}
	for _, k := range spec.TagKeys {
		m.keys = append(m.keys, AppendTagKey(nil, []byte(k)))
	}
	if len(m.keys) == 0 {
		m.static = in.add(m, "")
	} else {
		m.raw = newRawIndex()
		m.canon = make(map[string]Key)
	}
	in.names[name] = true
	in.stats.Metrics++
	return m, nil
}

// add creates a series of m whose variable tags are vtags, reusing the key
// of an evicted series if there is one.
func (in *Interner) add(m *Metric, vtags string) Key {
	tags := vtags + m.constTags
	if vtags == "" && tags != "" {
		tags = tags[1:] // drop the leading comma
	}
	if n := len(in.free); n > 0 {
		k := in.free[n-1]
		in.free = in.free[:n-1]
		in.series[k] = series{m: m, tags: tags, canon: vtags, gen: in.series[k].gen}
		return k
	}
	k := Key(len(in.series))
	in.series = append(in.series, series{m: m, tags: tags, canon: vtags})
	return k
}

// evictable reports whether series k may be evicted: a live series of a
// metric with variable tags, other than its overflow series.
func (in *Interner) evictable(k Key) bool {
	m := in.series[k].m
	return m != nil && len(m.keys) > 0 && k != m.overflow
}

// evict removes the series keys, which must be evictable: their budget is
// returned and their keys are reused by later series.
func (in *Interner) evict(keys []Key) {
	if len(keys) == 0 {
		return
	}
	var metrics []*Metric
	for _, k := range keys {
		s := &in.series[k]
		m := s.m
		delete(m.canon, s.canon)
		m.budget.release()
		if !slices.Contains(metrics, m) {
			metrics = append(metrics, m)
		}
		*s = series{gen: s.gen + 1}
	}
	for _, m := range metrics {
		m.raw.deleteFunc(func(k Key) bool { return in.series[k].m == nil })
	}
	in.free = append(in.free, keys...)
	in.stats.Evicted += uint64(len(keys))
}

// Key returns the series of m whose variable tags have the given raw
// values, one for each of the metric's TagKeys, in order; it panics if the
// count differs. Values are sanitised the first time they are seen. Past
// the cardinality budget, a new series maps to the metric's overflow
// series. A lookup of values seen before does not allocate.
//
// The key of a metric without TagKeys, and of an overflow series, is
// valid for good. The key of another series is valid until the next
// [Aggregator.Flush] when the aggregator evicts idle series: look it up
// again rather than keeping it.
func (m *Metric) Key(values ...[]byte) Key {
	if len(values) != len(m.keys) {
		panic("shipper: Metric.Key of " + m.name + " called with the wrong number of tag values")
	}
	switch len(values) {
	case 0:
		return m.static
	case 1:
		if k, ok := m.raw.get(values[0]); ok {
			return k
		}
		return m.slowKey(values, values[0])
	}
	rk := appendRawKey(m.in.scratch[:0], values)
	m.in.scratch = rk
	if k, ok := m.raw.get(rk); ok {
		return k
	}
	return m.slowKey(values, rk)
}

// appendRawKey appends each value, length first, so that no two lists of
// values share a raw key.
func appendRawKey(dst []byte, values [][]byte) []byte {
	for _, v := range values {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// slowKey looks values up by their sanitised form, creating the series if
// the budget allows, and remembers the raw spelling rk.
func (m *Metric) slowKey(values [][]byte, rk []byte) Key {
	in := m.in
	canon := in.canonBuf[:0]
	for i, v := range values {
		if i > 0 {
			canon = append(canon, ',')
		}
		canon = appendTag(canon, m.keys[i], v)
	}
	in.canonBuf = canon
	k, ok := m.canon[string(canon)]
	if !ok {
		if !m.budget.take() {
			in.stats.Overflowed++
			return m.overflowKey()
		}
		vtags := string(canon)
		k = in.add(m, vtags)
		m.canon[vtags] = k
	}
	if m.budget.cacheRaw(m.raw.len()) {
		m.raw.put(rk, k)
	}
	return k
}

// overflowKey returns the overflow series, creating it on first use.
func (m *Metric) overflowKey() Key {
	if m.overflow == noKey {
		var b []byte
		for i, k := range m.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(append(append(b, k...), ':'), OverflowTagValue...)
		}
		m.overflow = m.in.add(m, string(b))
	}
	return m.overflow
}

// Len returns the number of keys, of live series and evicted ones; every
// Key is below it.
func (in *Interner) Len() int { return len(in.series) }

// Metric returns the metric of series k, or nil if it was evicted.
func (in *Interner) Metric(k Key) *Metric { return in.series[k].m }

// Tags returns the sanitised tags of series k, "k:v" comma-separated:
// variable tags, then the metric's, then the global ones.
func (in *Interner) Tags(k Key) string { return in.series[k].tags }

// Stats returns what the interner holds and refused.
func (in *Interner) Stats() InternerStats {
	s := in.stats
	s.Series = len(in.series) - len(in.free)
	return s
}

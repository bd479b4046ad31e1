package shipper

import "strconv"

// Kind is the type of a metric, which decides how its values aggregate and
// the type field of its lines.
type Kind uint8

// Kinds of metrics.
const (
	// Counter sums int64 deltas exactly over a flush interval ("|c").
	Counter Kind = iota
	// Gauge keeps the last value set in a flush interval ("|g").
	Gauge
	// Histogram ships every observed value, or log2 buckets, as "|h".
	Histogram
	// Distribution ships every observed value, or log2 buckets, as "|d".
	Distribution
	// Timing ships every observed value, or log2 buckets, as "|ms".
	Timing
	numKinds
)

var kindNames = [numKinds]string{"counter", "gauge", "histogram", "distribution", "timing"}

// String returns the kind's name, such as "counter".
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// observes reports whether values of k are observations: histograms,
// distributions and timings.
func (k Kind) observes() bool { return k >= Histogram && k < numKinds }

// Priority orders what is shipped first and shed last. The zero value is
// [Normal].
type Priority int8

// Priorities, from shed first to shipped first.
const (
	Low      Priority = -1
	Normal   Priority = 0
	Critical Priority = 1
	// numPriorities is the number of priority classes.
	numPriorities = 3
)

// class is the index of p in per-priority arrays: Low 0, Normal 1,
// Critical 2. Out-of-range priorities clamp.
func (p Priority) class() int { return int(min(max(p, Low), Critical) + 1) }

// String returns "low", "normal" or "critical".
func (p Priority) String() string {
	switch p {
	case Low:
		return "low"
	case Normal:
		return "normal"
	case Critical:
		return "critical"
	}
	return "priority(" + strconv.Itoa(int(p)) + ")"
}

// MetricSpec describes a metric to register with [Interner.Register].
type MetricSpec struct {
	// Name is the metric name; it is sanitised by [AppendName].
	Name string
	// Kind decides aggregation and the line's type field.
	Kind Kind
	// Priority orders shipping and shedding; the zero value is Normal.
	Priority Priority
	// TagKeys names the variable tags: every call to [Metric.Key] passes one
	// value for each, in this order. Keys are sanitised by [AppendTagKey].
	TagKeys []string
	// Tags are constant "key:value" tags of this metric, sanitised.
	Tags []string
	// MaxSeries bounds the distinct series of this metric; lookups past it
	// go to one overflow series. Zero means the interner's
	// MaxSeriesPerMetric.
	MaxSeries int
	// KeepZero ships a counter series touched in an interval even when its
	// sum is zero, as self-telemetry does so that a dashboard reads 0
	// rather than nothing.
	KeepZero bool
}

// Metric is a registered metric: a name, a kind, a priority and tags. Its
// series are looked up with [Metric.Key]. A Metric belongs to its
// [Interner] and follows its concurrency rules.
type Metric struct {
	in        *Interner
	name      string
	kind      Kind
	prio      Priority
	keepZero  bool
	keys      [][]byte // sanitised variable tag keys
	constTags string   // ",k:v" constant and global tags, each after a comma
	budget    budget

	raw      *rawIndex      // raw tag values (see appendRawKey) -> series
	canon    map[string]Key // sanitised variable tags -> series
	static   Key            // the one series of a metric without TagKeys
	overflow Key            // the overflow series, or noKey
}

// Name returns the sanitised metric name.
func (m *Metric) Name() string { return m.name }

// Kind returns the metric's kind.
func (m *Metric) Kind() Kind { return m.kind }

// Priority returns the metric's priority.
func (m *Metric) Priority() Priority { return m.prio }

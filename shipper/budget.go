package shipper

// Default cardinality budgets, used where an option is zero.
const (
	// DefaultMaxSeries bounds the series of all metrics of an [Interner].
	DefaultMaxSeries = 16384
	// DefaultMaxSeriesPerMetric bounds the series of one metric.
	DefaultMaxSeriesPerMetric = 4096
	// rawPerSeries bounds the raw spellings remembered per series budget:
	// past it, a lookup sanitises its values again instead of caching them.
	rawPerSeries = 2
)

// budget counts the series of one metric against its own limit and the
// interner's overall one.
type budget struct {
	limit  int  // series this metric may have
	n      int  // series it has, not counting the overflow series
	global *int // series of the whole interner
	max    int  // limit of the whole interner
}

// take reports whether one more series fits, and counts it if so.
func (b *budget) take() bool {
	if b.n >= b.limit || *b.global >= b.max {
		return false
	}
	b.n++
	*b.global++
	return true
}

// release gives back one series.
func (b *budget) release() {
	b.n--
	*b.global--
}

// cacheRaw reports whether a raw spelling may be remembered, given the
// number already remembered: raw spellings stay within a fixed multiple of
// the limit, so a flood of spellings of the same series cannot grow memory.
func (b *budget) cacheRaw(remembered int) bool { return remembered < rawPerSeries*b.limit }

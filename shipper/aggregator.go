package shipper

import "math"

// AggregatorOptions configure an [Aggregator]. The zero value works.
type AggregatorOptions struct {
	// MaxSamples bounds the observed values a series keeps as they are per
	// flush interval; past it, values go to log2 buckets that keep exact
	// counts and sums. Zero means [DefaultMaxSamples].
	MaxSamples int
	// IdleIntervals, if positive, evicts a series of a metric with TagKeys
	// that no update touched for that many flushes: its budget is returned
	// and its key reused, so that names which come and go (process names)
	// do not fill the budget for good. Zero keeps every series.
	IdleIntervals int
}

// AggregatorStats count what an [Aggregator] did.
type AggregatorStats struct {
	// Invalid counts values that were NaN or infinite and so were dropped.
	Invalid uint64
	// Deferred counts low-priority series held back for a later interval
	// by shedding (see [Aggregator.SetShed]); their values were kept.
	Deferred uint64
}

// Aggregator accumulates values per series over a flush interval: exact
// int64 sums for counters, the last value for gauges, and observations for
// histograms, distributions and timings. Updating a series seen before
// does not allocate.
//
// An Aggregator is not safe for concurrent use: the goroutine that looks up
// keys in its [Interner] updates it, and [Aggregator.Flush] must not run at
// the same time (the daemon holds one lock around both).
type Aggregator struct {
	in         *Interner
	maxSamples int
	epoch      uint32 // current interval; a slot touched in it carries it
	slots      []slot
	dirty      [numPriorities][]Key // series touched in this interval
	spare      [numPriorities][]Key
	shed       uint32
	idle       uint32
	evict      []Key
	stats      AggregatorStats
}

// slot is the state of one series in the current interval.
type slot struct {
	epoch uint32
	n     int64   // counter sum
	f     float64 // gauge value
	h     *hist   // observations
}

// NewAggregator returns an Aggregator for the series of in.
func NewAggregator(in *Interner, opts AggregatorOptions) *Aggregator {
	a := &Aggregator{in: in, maxSamples: opts.MaxSamples, epoch: 1, shed: 1, idle: uint32(max(opts.IdleIntervals, 0))}
	if a.maxSamples <= 0 {
		a.maxSamples = DefaultMaxSamples
	}
	return a
}

// touch returns the slot of k, marking it as touched in this interval.
func (a *Aggregator) touch(k Key) *slot {
	if int(k) >= len(a.slots) {
		a.grow()
	}
	s := &a.slots[k]
	if s.epoch != a.epoch {
		s.epoch = a.epoch
		c := a.in.series[k].m.prio.class()
		a.dirty[c] = append(a.dirty[c], k)
	}
	return s
}

// grow adds slots for new keys, marked as touched in the last interval so
// that a key looked up but not yet updated is not idle.
func (a *Aggregator) grow() {
	for len(a.slots) < a.in.Len() {
		a.slots = append(a.slots, slot{epoch: a.epoch - 1})
	}
}

// Add adds delta to the counter series k.
func (a *Aggregator) Add(k Key, delta int64) {
	a.touch(k).n += delta
}

// Set sets the gauge series k to v; the last value of an interval ships.
// NaN and infinities are dropped and counted as invalid.
func (a *Aggregator) Set(k Key, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		a.stats.Invalid++
		return
	}
	a.touch(k).f = v
}

// Observe records one value of the histogram, distribution or timing
// series k. NaN and infinities are dropped and counted as invalid.
func (a *Aggregator) Observe(k Key, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		a.stats.Invalid++
		return
	}
	a.hist(k).observe(v, a.maxSamples)
}

// AddBuckets adds a kernel log2 histogram to the series k: counts[0] is the
// number of zero values and counts[i] the number in [2^(i-1), 2^i). Each
// bucket ships at its [BucketMidpoint] with sample rate 1/count.
func (a *Aggregator) AddBuckets(k Key, counts []uint64) {
	a.hist(k).addBuckets(counts)
}

func (a *Aggregator) hist(k Key) *hist {
	s := a.touch(k)
	if s.h == nil {
		s.h = &hist{values: make([]float64, 0, min(a.maxSamples, 8))}
	}
	return s.h
}

// SetShed makes [Aggregator.Flush] ship each low-priority series only every
// n-th interval, chosen by key so that the load spreads evenly; in between,
// its values keep aggregating, so nothing is lost, only delayed. n ≤ 1 ships
// every series every interval.
func (a *Aggregator) SetShed(n int) { a.shed = uint32(max(n, 1)) }

// Stats returns what the aggregator dropped and deferred.
func (a *Aggregator) Stats() AggregatorStats { return a.stats }

// Flush packs every series touched in this interval into p, critical
// series first and low-priority ones last, resets them and starts the next
// interval. It does not flush p's open datagrams; [Packer.Flush] does.
func (a *Aggregator) Flush(p *Packer) {
	next := a.epoch + 1
	if next == 0 {
		next = 1
	}
	for c := numPriorities - 1; c >= 0; c-- {
		keys, carry := a.dirty[c], a.spare[c][:0]
		for _, k := range keys {
			s := &a.slots[k]
			if c == Low.class() && a.shed > 1 && (uint32(k)+a.epoch)%a.shed != 0 {
				s.epoch = next
				carry = append(carry, k)
				a.stats.Deferred++
				continue
			}
			a.ship(p, k, s)
		}
		a.dirty[c], a.spare[c] = carry, keys[:0]
	}
	a.evictIdle()
	a.epoch = next
}

// evictIdle evicts the series idle for more than IdleIntervals flushes.
func (a *Aggregator) evictIdle() {
	if a.idle == 0 {
		return
	}
	keys := a.evict[:0]
	for k := range a.slots {
		s := &a.slots[k]
		// A series deferred by shedding carries the next epoch: it is one
		// interval ahead, not idle (the signed difference is -1).
		if int32(a.epoch-s.epoch) > int32(a.idle) && a.in.evictable(Key(k)) {
			keys = append(keys, Key(k))
			h := s.h
			if h != nil {
				h.reset()
			}
			*s = slot{epoch: a.epoch, h: h}
		}
	}
	a.in.evict(keys)
	a.evict = keys[:0]
}

// ship packs the series k and resets its slot.
func (a *Aggregator) ship(p *Packer, k Key, s *slot) {
	ser := &a.in.series[k]
	switch ser.m.kind {
	case Counter:
		if s.n != 0 || ser.m.keepZero {
			p.counter(k, ser, s.n)
		}
		s.n = 0
	case Gauge:
		p.gauge(k, ser, s.f)
	default:
		if h := s.h; h != nil && !h.empty() {
			p.observations(k, ser, h)
			h.reset()
		}
	}
}

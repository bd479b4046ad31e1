package shipper

import "math/bits"

// numBuckets is the number of log2 buckets: bucket 0 holds 0, bucket i
// holds [2^(i-1), 2^i) for i from 1 to 64.
const numBuckets = 65

// DefaultMaxSamples is how many observed values a series keeps as they are
// per flush interval when [AggregatorOptions.MaxSamples] is zero.
const DefaultMaxSamples = 64

// hist holds the observations of one histogram, distribution or timing
// series over a flush interval: exact values up to a limit, then log2
// buckets that keep exact counts and sums, plus the kernel's log2 buckets,
// which carry counts only.
type hist struct {
	values []float64
	over   *overflowBuckets
	kernel *[numBuckets]uint64
	kmask  uint64 // kernel buckets 0..63 that are not empty
	kzero  bool   // kernel bucket 64 is not empty
}

// overflowBuckets take the values past the exact limit: per log2 bucket of
// the integer part, a count and a sum, and the same for negative values.
type overflowBuckets struct {
	count  [numBuckets]uint64
	sum    [numBuckets]float64
	neg    uint64
	negSum float64
	used   bool
}

// BucketMidpoint returns the value a kernel log2 bucket ships as: 0 for
// bucket 0, 1 for bucket 1 ([1, 2)), and 3·2^(i-2) for bucket i ≥ 2, the
// middle of [2^(i-1), 2^i).
func BucketMidpoint(i int) float64 {
	switch {
	case i <= 0:
		return 0
	case i == 1:
		return 1
	}
	return 3 * float64(uint64(1)<<(i-2))
}

// log2Bucket returns the bucket of a value v ≥ 0.
func log2Bucket(v float64) int {
	if v >= 1<<63 {
		return numBuckets - 1
	}
	return bits.Len64(uint64(v))
}

func (h *hist) observe(v float64, maxSamples int) {
	if len(h.values) < maxSamples {
		h.values = append(h.values, v)
		return
	}
	if h.over == nil {
		h.over = new(overflowBuckets)
	}
	o := h.over
	o.used = true
	if v < 0 {
		o.neg++
		o.negSum += v
		return
	}
	i := log2Bucket(v)
	o.count[i]++
	o.sum[i] += v
}

func (h *hist) addBuckets(counts []uint64) {
	if h.kernel == nil {
		h.kernel = new([numBuckets]uint64)
	}
	for i, n := range counts[:min(len(counts), numBuckets)] {
		if n == 0 {
			continue
		}
		h.kernel[i] += n
		if i < 64 {
			h.kmask |= 1 << i
		} else {
			h.kzero = true
		}
	}
}

// empty reports whether nothing was observed.
func (h *hist) empty() bool {
	return len(h.values) == 0 && (h.over == nil || !h.over.used) && h.kmask == 0 && !h.kzero
}

// weighted is a value shipped with a count: count observations of value.
type weighted struct {
	value float64
	count uint64
}

// appendBuckets appends the non-empty buckets as weighted values: kernel
// buckets at their midpoints, overflow buckets at the mean of their values,
// so that the shipped count and sum of overflowed values are exact.
func (h *hist) appendBuckets(dst []weighted) []weighted {
	for m := h.kmask; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		dst = append(dst, weighted{BucketMidpoint(i), h.kernel[i]})
	}
	if h.kzero {
		dst = append(dst, weighted{BucketMidpoint(64), h.kernel[64]})
	}
	if o := h.over; o != nil && o.used {
		for i, n := range o.count {
			if n != 0 {
				dst = append(dst, weighted{o.sum[i] / float64(n), n})
			}
		}
		if o.neg != 0 {
			dst = append(dst, weighted{o.negSum / float64(o.neg), o.neg})
		}
	}
	return dst
}

// reset empties h, keeping its memory.
func (h *hist) reset() {
	h.values = h.values[:0]
	if o := h.over; o != nil && o.used {
		*o = overflowBuckets{}
	}
	if h.kernel != nil && (h.kmask != 0 || h.kzero) {
		*h.kernel = [numBuckets]uint64{}
	}
	h.kmask, h.kzero = 0, false
}

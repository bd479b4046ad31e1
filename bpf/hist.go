package bpf

import (
	"errors"
	"math"

	"github.com/cilium/ebpf"
)

// HistSlots is the number of buckets in a kernel histogram (HIST_SLOTS in
// include/hist.h).
const HistSlots = 40

// Hist is a log2 histogram aggregated in the kernel, summed over CPUs.
// Bucket 0 counts the value 0 and bucket i ≥ 1 counts values in
// [2^(i-1), 2^i), the bucket of Go's bits.Len64; the last bucket also counts
// every larger value. The block and run-queue histograms count nanoseconds.
//
// The kernel's counts only grow: readers return totals since the programs
// were loaded, and [Hist.Sub] turns two reads into an interval's counts.
type Hist [HistSlots]uint64

// Count returns the number of values counted.
func (h *Hist) Count() uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// Add adds o's counts to h.
func (h *Hist) Add(o *Hist) {
	for i, c := range o {
		h[i] += c
	}
}

// Sub returns the counts added since prev, an earlier read of the same
// histogram. A bucket smaller than in prev (the histogram was removed and
// created again in between) counts from zero.
func (h *Hist) Sub(prev *Hist) Hist {
	var d Hist
	for i, c := range h {
		if c >= prev[i] {
			d[i] = c - prev[i]
		} else {
			d[i] = c
		}
	}
	return d
}

// Quantile returns the bucket that holds the q-quantile (0 ≤ q ≤ 1) of the
// values counted: the first bucket whose cumulative count reaches
// ⌈q·Count⌉ (at least 1). It returns -1 if h is empty.
func (h *Hist) Quantile(q float64) int {
	total := h.Count()
	if total == 0 {
		return -1
	}
	rank := uint64(math.Ceil(min(max(q, 0), 1) * float64(total)))
	rank = min(max(rank, 1), total)
	var cum uint64
	for i, c := range h {
		cum += c
		if cum >= rank {
			return i
		}
	}
	return HistSlots - 1 // unreachable: cum reaches total
}

// Median returns the bucket that holds the median, or -1 if h is empty.
func (h *Hist) Median() int { return h.Quantile(0.5) }

// BucketBounds returns the values bucket i counts: lo ≤ v < hi, except the
// last bucket, which has no upper bound and returns hi = math.MaxUint64.
func BucketBounds(i int) (lo, hi uint64) {
	switch {
	case i <= 0:
		return 0, 1
	case i >= HistSlots-1:
		return 1 << (HistSlots - 2), math.MaxUint64
	}
	return 1 << (i - 1), 1 << i
}

// sumHist sums per-CPU copies of a histogram.
func sumHist(perCPU []Hist) Hist {
	var h Hist
	for i := range perCPU {
		h.Add(&perCPU[i])
	}
	return h
}

// forgetStarts empties a hash map of start times (keys K, values u64), so
// that waits that began before the programs were last detached are not
// measured when they are attached again. Call it only while the programs
// are detached.
func forgetStarts[K any](m *ebpf.Map) error {
	var (
		keys  []K
		key   K
		start uint64
	)
	it := m.Iterate()
	for it.Next(&key, &start) {
		keys = append(keys, key)
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

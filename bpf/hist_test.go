package bpf_test

import (
	"math"
	"math/bits"
	"testing"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// TestBucketBounds checks that the buckets tile the values without gaps,
// that each value's bucket is its bit length (as hist_slot in
// include/hist.h computes it), and that the midpoints the shipper sends
// each bucket as fall inside it.
func TestBucketBounds(t *testing.T) {
	var next uint64
	for i := range bpf.HistSlots {
		lo, hi := bpf.BucketBounds(i)
		if lo != next || hi <= lo {
			t.Fatalf("bucket %d: [%d, %d), want it to start at %d", i, lo, hi, next)
		}
		if i < bpf.HistSlots-1 && (bits.Len64(lo) != i || bits.Len64(hi-1) != i) {
			t.Errorf("bucket %d: [%d, %d) holds values of another bit length", i, lo, hi)
		}
		if m := shipper.BucketMidpoint(i); m < float64(lo) || (i < bpf.HistSlots-1 && m >= float64(hi)) {
			t.Errorf("bucket %d: midpoint %g outside [%d, %d)", i, m, lo, hi)
		}
		next = hi
	}
	if next != math.MaxUint64 {
		t.Errorf("last bucket ends at %d, want no bound", next)
	}
}

func TestHistQuantile(t *testing.T) {
	var h bpf.Hist
	if h.Median() != -1 || h.Quantile(0.99) != -1 || h.Count() != 0 {
		t.Errorf("empty histogram: median %d, p99 %d, count %d", h.Median(), h.Quantile(0.99), h.Count())
	}
	h[3], h[5], h[10] = 4, 5, 1 // 10 values
	for _, tc := range []struct {
		q    float64
		want int
	}{{0, 3}, {0.1, 3}, {0.4, 3}, {0.41, 5}, {0.5, 5}, {0.9, 5}, {0.91, 10}, {1, 10}, {-1, 3}, {2, 10}} {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%g) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if h.Median() != 5 || h.Count() != 10 {
		t.Errorf("median %d, count %d; want 5, 10", h.Median(), h.Count())
	}
}

func TestHistSub(t *testing.T) {
	var prev, cur bpf.Hist
	prev[1], prev[2] = 3, 7
	cur[1], cur[2], cur[4] = 5, 2, 1 // bucket 2 went back: counted afresh
	d := cur.Sub(&prev)
	want := bpf.Hist{1: 2, 2: 2, 4: 1}
	if d != want {
		t.Errorf("Sub = %v, want %v", d, want)
	}
	d.Add(&prev)
	if want := (bpf.Hist{1: 5, 2: 9, 4: 1}); d != want {
		t.Errorf("Add = %v, want %v", d, want)
	}
}

func TestDev(t *testing.T) {
	d := bpf.MakeDev(259, 1048575)
	if d.Major() != 259 || d.Minor() != 1048575 || d.String() != "259:1048575" {
		t.Errorf("MakeDev(259, 1048575) = %s (%d:%d)", d, d.Major(), d.Minor())
	}
	if _, err := bpf.DiskName(bpf.MakeDev(4095, 12345)); err == nil {
		t.Error("DiskName of a disk that does not exist succeeded")
	}
}

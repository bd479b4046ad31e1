package shipper

import (
	"math"
	"strconv"
	"testing"
)

func TestAppendInt(t *testing.T) {
	vals := []int64{0, 1, -1, 9, 10, 99, 100, 101, 12345, -12345, math.MaxInt64, math.MinInt64}
	for p := int64(1); p > 0 && p < math.MaxInt64/10; p *= 10 {
		vals = append(vals, p-1, p, p+1, -p)
	}
	for _, v := range vals {
		if got, want := string(appendInt([]byte("x"), v)), "x"+strconv.FormatInt(v, 10); got != want {
			t.Errorf("appendInt(%d) = %q, want %q", v, got, want)
		}
	}
}

func FuzzAppendInt(f *testing.F) {
	f.Add(int64(12345))
	f.Fuzz(func(t *testing.T, v int64) {
		if got, want := string(appendInt(nil, v)), strconv.FormatInt(v, 10); got != want {
			t.Errorf("appendInt(%d) = %q, want %q", v, got, want)
		}
	})
}

func TestDecimalLen(t *testing.T) {
	want := 1
	for u, p := uint64(0), uint64(10); ; u++ {
		if u == p {
			want++
			if p > math.MaxUint64/10 {
				break
			}
			p *= 10
		}
		if got := decimalLen(u); got != want {
			t.Fatalf("decimalLen(%d) = %d, want %d", u, got, want)
		}
		if u > 1000 && u < p-2 {
			u = p - 2 // skip to just below the next power of ten
		}
	}
	if got := decimalLen(math.MaxUint64); got != 20 {
		t.Fatalf("decimalLen(MaxUint64) = %d, want 20", got)
	}
}

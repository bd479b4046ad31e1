package ringbuf

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestNewLanes(t *testing.T) {
	if _, err := NewLanes[int](0, 4, RingOptions{}); err == nil {
		t.Error("NewLanes(0, 4): no error")
	}
	if _, err := NewLanes[int](2, 3, RingOptions{}); !errors.Is(err, ErrRingSize) {
		t.Errorf("NewLanes(2, 3): %v, want ErrRingSize", err)
	}
	l, err := NewLanes[int](3, 4, RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.NumLanes() != 3 || l.Cap() != 12 || l.Len() != 0 {
		t.Errorf("NumLanes %d, Cap %d, Len %d", l.NumLanes(), l.Cap(), l.Len())
	}
}

// TestLanesTurns checks that the consumer takes the lanes in turn, and each
// lane's items in order.
func TestLanesTurns(t *testing.T) {
	l, err := NewLanes[int](3, 4, RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		l.Lane(i).PushBatch([]int{10 * i, 10*i + 1, 10*i + 2})
	}
	if l.Len() != 9 {
		t.Fatalf("Len %d", l.Len())
	}
	var v int
	var got []int
	for range 3 {
		l.Pop(&v)
		got = append(got, v)
	}
	if want := []int{0, 10, 20}; !slices.Equal(got, want) {
		t.Errorf("Pop gave %v, want %v", got, want)
	}
	buf := make([]int, 3)
	got = got[:0]
	for n := l.PopBatch(buf); n > 0; n = l.PopBatch(buf) {
		got = append(got, buf[:n]...)
	}
	if want := []int{1, 2, 11, 12, 21, 22}; !slices.Equal(got, want) {
		t.Errorf("PopBatch gave %v, want %v", got, want)
	}
	if s := l.Stats(); s != (RingStats{Pushed: 9, Popped: 9}) {
		t.Errorf("Stats %+v", s)
	}
}

// TestLanesStats checks that drops in every lane are added up.
func TestLanesStats(t *testing.T) {
	l, err := NewLanes[int](2, 2, RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Lane(0).PushBatch([]int{1, 2, 3})
	l.Lane(1).PushBatch([]int{1, 2, 3, 4})
	if s := l.Stats(); s != (RingStats{Pushed: 4, Dropped: 3}) {
		t.Errorf("Stats %+v", s)
	}
	if s := l.Lane(1).Stats(); s != (RingStats{Pushed: 2, Dropped: 2}) || l.Lane(1).Len() != 2 {
		t.Errorf("lane 1: Stats %+v, Len %d", s, l.Lane(1).Len())
	}
}

func TestLanesStress(t *testing.T) {
	for _, p := range policies {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/batch=%v", p, batch), func(t *testing.T) {
				t.Parallel()
				l, err := NewLanes[item](4, 16, RingOptions{Policy: p})
				if err != nil {
					t.Fatal(err)
				}
				pushers := make([]pusher, l.NumLanes())
				for i := range pushers {
					pushers[i] = l.Lane(i)
				}
				stress(t, pushers, l, p, batch, 10000)
			})
		}
	}
}

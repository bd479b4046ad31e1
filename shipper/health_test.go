package shipper

import (
	"testing"
	"time"
)

func TestHealthHysteresis(t *testing.T) {
	var changes [][2]Level
	h := NewHealth(HealthOptions{LowerAfter: 2, OnLevel: func(o, n Level) { changes = append(changes, [2]Level{o, n}) }})
	steps := []struct {
		s    Signals
		want Level
	}{
		{Signals{RingFill: 0.2}, 0},
		{Signals{RingFill: 0.99}, 1}, // rises one level at a time
		{Signals{RingFill: 0.99}, 2},
		{Signals{RingFill: 0.99}, 3},
		{Signals{RingFill: 0.99}, 3}, // capped
		{Signals{RingFill: 0.8}, 3},  // below level 3's threshold, not clearly
		{Signals{RingFill: 0.6}, 3},  // clearly below, once
		{Signals{RingFill: 0.6}, 2},  // twice: falls one level
		{Signals{RingFill: 0.6}, 2},  // 0.6 is not clearly below 0.7
		{Signals{Events: 100, KernelDrops: 8}, 2},
		{Signals{QueueFill: 0.1}, 2},
		{Signals{QueueFill: 0.1}, 1},
		{Signals{SendErrors: 1}, 2},
		{Signals{HeapBytes: 1 << 30}, 3},
	}
	for i, st := range steps {
		if got := h.Observe(st.s); got != st.want || h.Level() != st.want {
			t.Fatalf("step %d (%+v): level %d, want %d", i, st.s, got, st.want)
		}
	}
	if len(changes) != 7 || changes[0] != [2]Level{0, 1} {
		t.Errorf("changes %v", changes)
	}
}

func TestLevelKnobs(t *testing.T) {
	if l := Level(2); l.SampleEvery() != 4 || l.Shed() != 4 || l.FlushInterval(time.Second) != 4*time.Second {
		t.Errorf("level 2 knobs: %d %d %v", l.SampleEvery(), l.Shed(), l.FlushInterval(time.Second))
	}
	if HeapBytes() == 0 {
		t.Error("no heap")
	}
}

// TestHealthNeverThrottles keeps level 0 under any pressure when MaxLevel
// is negative, and caps a large MaxLevel at MaxThrottleLevel.
func TestHealthNeverThrottles(t *testing.T) {
	saturated := Signals{RingFill: 1, QueueFill: 1, Events: 100, KernelDrops: 100}
	h := NewHealth(HealthOptions{MaxLevel: -1})
	for range 10 {
		if l := h.Observe(saturated); l != 0 {
			t.Fatalf("MaxLevel -1: level %d, want 0", l)
		}
	}
	h = NewHealth(HealthOptions{MaxLevel: 99})
	var l Level
	for range 20 {
		l = h.Observe(saturated)
	}
	if l != MaxThrottleLevel {
		t.Errorf("MaxLevel 99 under saturation: level %d, want %d", l, MaxThrottleLevel)
	}
}

package shipper

import (
	"testing"
	"time"
)

func TestBreakerStates(t *testing.T) {
	b := NewBreaker(BreakerOptions{Threshold: 2, MinBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Jitter: -1})
	t0 := time.Unix(1000, 0)
	if b.Failure(t0) || b.State() != BreakerClosed {
		t.Fatal("opened after one failure")
	}
	b.Success()
	if b.Failure(t0) {
		t.Fatal("a success did not reset the count")
	}
	if !b.Failure(t0) || b.State() != BreakerOpen {
		t.Fatal("did not open after two failures")
	}
	if b.Probe(t0.Add(99 * time.Millisecond)) {
		t.Fatal("probed before the backoff")
	}
	// Failed probes double the wait up to the maximum.
	at := t0
	for _, wait := range []time.Duration{100, 200, 300, 300} {
		wait *= time.Millisecond
		if got := b.ProbeAt().Sub(at); got != wait {
			t.Fatalf("wait %v, want %v", got, wait)
		}
		at = b.ProbeAt()
		if !b.Probe(at) || b.State() != BreakerHalfOpen {
			t.Fatal("no probe after the wait")
		}
		if !b.Failure(at) {
			t.Fatal("a failed probe did not reopen")
		}
	}
	b.Probe(b.ProbeAt())
	if !b.Success() || b.State() != BreakerClosed {
		t.Fatal("a good probe did not close")
	}
	// Closed again: the count starts over, and so does the backoff.
	b.Failure(at)
	b.Failure(at)
	if got := b.ProbeAt().Sub(at); got != 100*time.Millisecond {
		t.Errorf("backoff after reopening %v", got)
	}
}

func TestBreakerJitter(t *testing.T) {
	t0 := time.Unix(0, 0)
	seen := map[time.Duration]bool{}
	for seed := range uint64(50) {
		b := NewBreaker(BreakerOptions{Threshold: 1, MinBackoff: time.Second, Seed: seed + 1})
		b.Failure(t0)
		w := b.ProbeAt().Sub(t0)
		if w < 800*time.Millisecond || w > 1200*time.Millisecond {
			t.Fatalf("jittered wait %v outside ±20%%", w)
		}
		seen[w] = true
	}
	if len(seen) < 40 {
		t.Errorf("only %d distinct waits in 50 seeds", len(seen))
	}
	a, b := NewBreaker(BreakerOptions{Threshold: 1, Seed: 7}), NewBreaker(BreakerOptions{Threshold: 1, Seed: 7})
	a.Failure(t0)
	b.Failure(t0)
	if a.ProbeAt() != b.ProbeAt() {
		t.Error("same seed, different jitter")
	}
}

package shipper

import (
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"
)

// BreakerState is the state of a [Breaker].
type BreakerState int32

// Breaker states.
const (
	// BreakerClosed lets everything through.
	BreakerClosed BreakerState = iota
	// BreakerOpen stops sending until the next probe.
	BreakerOpen
	// BreakerHalfOpen lets one probe through.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Breaker defaults, used where an option is zero.
const (
	DefaultBreakerThreshold  = 3
	DefaultBreakerMinBackoff = 250 * time.Millisecond
	DefaultBreakerMaxBackoff = time.Second
	DefaultBreakerJitter     = 0.2
)

// BreakerOptions configure a [Breaker]. The zero value works.
type BreakerOptions struct {
	// Threshold is the number of consecutive failed send rounds that open
	// the breaker; zero means [DefaultBreakerThreshold].
	Threshold int
	// MinBackoff is the wait before the first probe; zero means
	// [DefaultBreakerMinBackoff]. Each failed probe doubles the wait, up to
	// MaxBackoff; zero means [DefaultBreakerMaxBackoff].
	MinBackoff, MaxBackoff time.Duration
	// Jitter spreads each wait uniformly by ± this fraction; zero means
	// [DefaultBreakerJitter], a negative value none.
	Jitter float64
	// Seed seeds the jitter; zero seeds it at random.
	Seed uint64
}

// Breaker is a circuit breaker for sends: it opens after a run of failed
// send rounds, lets a probe through after a jittered backoff (half-open),
// and closes when a probe succeeds.
//
// State may be called from any goroutine; the other methods belong to the
// sending goroutine.
type Breaker struct {
	threshold        int
	minWait, maxWait time.Duration
	jitter           float64
	rng              *rand.Rand
	state            atomic.Int32
	failures         int
	backoff          time.Duration
	probeAt          time.Time
}

// NewBreaker returns a closed Breaker.
func NewBreaker(opts BreakerOptions) *Breaker {
	b := &Breaker{threshold: opts.Threshold, minWait: opts.MinBackoff, maxWait: opts.MaxBackoff, jitter: opts.Jitter}
	if b.threshold <= 0 {
		b.threshold = DefaultBreakerThreshold
	}
	if b.minWait <= 0 {
		b.minWait = DefaultBreakerMinBackoff
	}
	if b.maxWait <= 0 {
		b.maxWait = DefaultBreakerMaxBackoff
	}
	b.maxWait = max(b.maxWait, b.minWait)
	switch {
	case b.jitter == 0:
		b.jitter = DefaultBreakerJitter
	case b.jitter < 0:
		b.jitter = 0
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	b.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return b
}

// State returns the current state.
func (b *Breaker) State() BreakerState { return BreakerState(b.state.Load()) }

// Failure records a failed send round or probe at now, and reports whether
// it opened the breaker.
func (b *Breaker) Failure(now time.Time) (opened bool) {
	switch b.State() {
	case BreakerClosed:
		b.failures++
		if b.failures < b.threshold {
			return false
		}
		b.backoff = b.minWait
	case BreakerHalfOpen:
		b.backoff = min(2*b.backoff, b.maxWait)
	default:
		return false
	}
	b.probeAt = now.Add(b.jittered(b.backoff))
	b.state.Store(int32(BreakerOpen))
	return true
}

// Trip opens the breaker at now whatever its state, as when the receiver
// is known to be missing from the start.
func (b *Breaker) Trip(now time.Time) {
	b.failures = 0
	b.backoff = b.minWait
	b.probeAt = now.Add(b.jittered(b.backoff))
	b.state.Store(int32(BreakerOpen))
}

func (b *Breaker) jittered(d time.Duration) time.Duration {
	if b.jitter == 0 {
		return d
	}
	f := 1 + b.jitter*(2*b.rng.Float64()-1)
	return time.Duration(float64(d) * f)
}

// Success records a successful send round or probe, and reports whether it
// closed the breaker.
func (b *Breaker) Success() (closed bool) {
	b.failures = 0
	if b.State() == BreakerClosed {
		return false
	}
	b.state.Store(int32(BreakerClosed))
	return true
}

// Failures returns the failed rounds in a row counted while closed.
func (b *Breaker) Failures() int { return b.failures }

// ProbeAt returns when an open breaker lets the next probe through.
func (b *Breaker) ProbeAt() time.Time { return b.probeAt }

// Probe reports whether a probe may go now: it turns an open breaker whose
// wait is over half-open.
func (b *Breaker) Probe(now time.Time) bool {
	if b.State() != BreakerOpen || now.Before(b.probeAt) {
		return false
	}
	b.state.Store(int32(BreakerHalfOpen))
	return true
}

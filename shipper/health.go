package shipper

import (
	"math"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"
)

// Level is a throttle level: 0 is normal operation, each level above it
// sheds more load.
type Level int32

// DefaultMaxLevel is the highest level when [HealthOptions.MaxLevel] is
// zero.
const DefaultMaxLevel = 3

// MaxThrottleLevel is the highest level a [Health] can reach.
const MaxThrottleLevel = 4

// levelThresholds are the pressures from which each level above 0 is
// wanted; a level is left when pressure falls below its threshold less
// hysteresisMargin.
var levelThresholds = [MaxThrottleLevel]float64{0.5, 0.7, 0.85, 0.95}

const hysteresisMargin = 0.15

// SampleEvery returns the kernel sampling period for the level: keep one
// event in 2^level.
func (l Level) SampleEvery() uint32 { return 1 << max(l, 0) }

// Shed returns the low-priority shedding factor for the level: ship each
// low-priority series every 2^level intervals (see [Aggregator.SetShed]).
func (l Level) Shed() int { return 1 << max(l, 0) }

// FlushInterval returns base stretched for the level: base × 2^level, so
// that more updates aggregate into each line under pressure.
func (l Level) FlushInterval(base time.Duration) time.Duration { return base << max(l, 0) }

// String returns "level N".
func (l Level) String() string { return "level " + strconv.Itoa(int(l)) }

// Signals are what the health monitor watches, measured over one interval.
type Signals struct {
	RingFill    float64 // fraction of the kernel ring in use, 0 to 1
	Events      uint64  // events the kernel programs saw
	KernelDrops uint64  // events they could not deliver (ring full)
	Lines       uint64  // lines produced
	UserDrops   uint64  // lines dropped in user space, for any reason
	SendErrors  uint64  // failed sends
	QueueFill   float64 // fraction of the send queue in use, 0 to 1
	HeapBytes   uint64  // live heap
}

// HealthOptions configure a [Health] monitor. The zero value works.
type HealthOptions struct {
	// MaxLevel is the highest throttle level; zero means
	// [DefaultMaxLevel], a negative value 0 (never throttle), and it is at
	// most [MaxThrottleLevel].
	MaxLevel int
	// HeapLimit is the heap at which heap pressure is full; zero means 256
	// MiB.
	HeapLimit uint64
	// RaiseAfter is how many observations in a row must want a higher
	// level before it rises by one; zero means 1.
	RaiseAfter int
	// LowerAfter is how many observations in a row must be clearly below
	// the level before it falls by one; zero means 3.
	LowerAfter int
	// OnLevel is called, from the goroutine that calls
	// [Health.Observe], when the level changes. The daemon sets the kernel
	// sampling knob from it.
	OnLevel func(old, new Level)
}

// Health turns signals of load into a throttle [Level], with hysteresis so
// that it does not flap: it rises quickly and falls slowly.
//
// Observe belongs to one goroutine (the flush loop); Level and Pressure may
// be called from any goroutine.
type Health struct {
	opts     HealthOptions
	level    atomic.Int32
	pressure atomic.Uint64 // float64 bits
	up, down int
}

// NewHealth returns a monitor at level 0.
func NewHealth(opts HealthOptions) *Health {
	switch {
	case opts.MaxLevel == 0:
		opts.MaxLevel = DefaultMaxLevel
	case opts.MaxLevel < 0:
		opts.MaxLevel = 0
	}
	opts.MaxLevel = min(opts.MaxLevel, len(levelThresholds))
	if opts.HeapLimit == 0 {
		opts.HeapLimit = 256 << 20
	}
	if opts.RaiseAfter <= 0 {
		opts.RaiseAfter = 1
	}
	if opts.LowerAfter <= 0 {
		opts.LowerAfter = 3
	}
	return &Health{opts: opts}
}

// Pressure scores signals from 0 (idle) up; 1 is saturated. It is the
// largest of: ring fill, queue fill, heap against its limit, ten times the
// kernel and user drop ratios (10% lost is saturation), and 0.75 if sends
// failed.
func (h *Health) Pressure(s Signals) float64 {
	p := max(s.RingFill, s.QueueFill, float64(s.HeapBytes)/float64(h.opts.HeapLimit))
	if s.Events > 0 {
		p = max(p, 10*float64(s.KernelDrops)/float64(s.Events))
	}
	if s.Lines > 0 {
		p = max(p, 10*float64(s.UserDrops)/float64(s.Lines))
	}
	if s.SendErrors > 0 {
		p = max(p, 0.75)
	}
	return p
}

// Observe takes one interval's signals and returns the level, changing it
// by at most one.
func (h *Health) Observe(s Signals) Level {
	p := h.Pressure(s)
	h.pressure.Store(math.Float64bits(p))
	cur := Level(h.level.Load())
	want := Level(0)
	for want < Level(h.opts.MaxLevel) && p >= levelThresholds[want] {
		want++
	}
	next := cur
	switch {
	case want > cur:
		h.down = 0
		if h.up++; h.up >= h.opts.RaiseAfter {
			next, h.up = cur+1, 0
		}
	case cur > 0 && p < levelThresholds[cur-1]-hysteresisMargin:
		h.up = 0
		if h.down++; h.down >= h.opts.LowerAfter {
			next, h.down = cur-1, 0
		}
	default:
		h.up, h.down = 0, 0
	}
	if next != cur {
		h.level.Store(int32(next))
		if h.opts.OnLevel != nil {
			h.opts.OnLevel(cur, next)
		}
	}
	return next
}

// Level returns the current level.
func (h *Health) Level() Level { return Level(h.level.Load()) }

// LastPressure returns the pressure of the last observation.
func (h *Health) LastPressure() float64 { return math.Float64frombits(h.pressure.Load()) }

// HeapBytes returns the bytes of live and unswept heap objects, for
// [Signals.HeapBytes]. It allocates; call it once per interval.
func HeapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Package admin is the running daemon's status interface: a Unix socket,
// readable by root only, that answers with a [Snapshot] of the daemon's
// health, throughput and drop ledger, and the client and formatting that
// the CLI's --status, --drops and --health flags use.
//
// The protocol is one JSON document per connection: the client connects,
// the server writes the current snapshot and closes. It works whether or
// not the metrics receiver is up.
package admin

import "time"

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/bpfstatd/admin.sock"

// Snapshot is the state of a running daemon at one moment.
type Snapshot struct {
	PID        int               `json:"pid"`
	Started    time.Time         `json:"started"`
	Uptime     Duration          `json:"uptime"`
	Output     string            `json:"output"`
	Collectors []CollectorStatus `json:"collectors"`
	Throttle   Throttle          `json:"throttle"`
	Breaker    string            `json:"breaker"` // closed, open or half-open
	Latency    Latency           `json:"latency"`
	RSSBytes   uint64            `json:"rss_bytes"`
	HeapBytes  uint64            `json:"heap_bytes"`
	Goroutines int               `json:"goroutines"`
	// Ledgers is each kernel program's ledger as the daemon last read it,
	// once a flush interval.
	Ledgers []Ledger `json:"ledgers"`
	// Drops is the whole drop ledger, every stage and reason, cumulative
	// since start.
	Drops  []Drop `json:"drops"`
	Health Health `json:"health"`
}

// CollectorStatus describes one enabled collector.
type CollectorStatus struct {
	Name     string `json:"name"`
	Programs int    `json:"programs"` // kernel programs attached
	// Events counts what the collector's programs saw since start, and
	// EventsPerSec its rate over the last flush interval.
	Events       uint64  `json:"events"`
	EventsPerSec float64 `json:"events_per_sec"`
}

// Throttle is the health monitor's current decision.
type Throttle struct {
	Level      int    `json:"level"`       // 0: none
	SampleRate uint32 `json:"sample_rate"` // kernel keeps 1 event in SampleRate
}

// Latency is the sampled kernel-event-to-send latency.
type Latency struct {
	P50 Duration `json:"p50"`
	P99 Duration `json:"p99"`
	Max Duration `json:"max"`
}

// Ledger is one kernel program's count of events, cumulative since start.
// For a ring-buffer program Seen == Emitted + RingFull + SampledOut +
// Pending, exactly once the program is detached; a read while it runs may
// catch events between their counts.
type Ledger struct {
	Program    string `json:"program"`
	Seen       uint64 `json:"seen"`
	Emitted    uint64 `json:"emitted"`
	RingFull   uint64 `json:"ring_full"`
	SampledOut uint64 `json:"sampled_out"`
	Pending    uint64 `json:"pending"` // events in runs not submitted yet
	Records    uint64 `json:"records"` // records submitted to the ring
}

// Drop is one line of the drop ledger.
type Drop struct {
	Stage  string `json:"stage"`  // kernel, drain, user_ring, aggregate, queue, send, breaker
	Reason string `json:"reason"` // ring_full, sampled_out, decode_error, cardinality, ...
	// Program or collector the count belongs to, when it has one.
	Source string `json:"source,omitempty"`
	Count  uint64 `json:"count"`
}

// Health is the daemon's own verdict, for probes.
type Health struct {
	Healthy bool     `json:"healthy"`
	Reasons []string `json:"reasons,omitempty"`
}

// Duration is a time.Duration that encodes in JSON as a string such as
// "1.5s", readable by people and by time.ParseDuration.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

package shipper

import (
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// Stat names one of the shipper's own counters.
type Stat uint8

// The shipper's own counters. Every datagram packed ends up in exactly one
// of sent, failed or dropped (by reason), or is still queued, where those
// returned were sent and failed both:
//
//	queued = sent - returned + failed + dropped_* + in queue
//
// and the same holds for lines.
const (
	StatDatagramsQueued Stat = iota // datagrams handed to the queue
	StatLinesQueued                 // lines in them
	StatDatagramsSent               // datagrams the kernel accepted
	StatLinesSent
	StatBytesSent
	StatDatagramsFailed // datagrams a send error lost, or the network returned
	StatLinesFailed
	StatBytesFailed
	StatSendCalls // send system calls
	// Drops by reason, in datagrams and lines.
	StatDroppedOldest       // evicted by a newer datagram from a full queue
	StatDroppedOldestLines  //
	StatDroppedNewest       // refused by a full queue
	StatDroppedNewestLines  //
	StatDroppedPriority     // evicted by, or refused for, a higher priority
	StatDroppedPriorityLine //
	StatDroppedClosed       // left in the queue when the shipper closed
	StatDroppedClosedLines  //
	StatBreakerOpened       // times the circuit breaker opened
	StatBreakerProbes       // half-open probes
	StatBreakerClosed       // times a probe closed it again
	StatReconnects          // successful reconnections of the socket
	StatFlushesDeferred     // flushes skipped while the breaker was open
	StatLinesTooLong        // lines longer than a datagram, never queued
	StatLinesRejected       // lines the dialect's receiver would reject, never queued
	// Datagrams sent that the network returned undelivered (an ICMP error
	// such as port unreachable quoting them), counted in sent and failed.
	StatDatagramsReturned
	StatLinesReturned
	numStats
)

var statNames = [numStats]string{
	"datagrams_queued", "lines_queued",
	"datagrams_sent", "lines_sent", "bytes_sent",
	"datagrams_failed", "lines_failed", "bytes_failed",
	"send_calls",
	"dropped_oldest", "dropped_oldest_lines",
	"dropped_newest", "dropped_newest_lines",
	"dropped_priority", "dropped_priority_lines",
	"dropped_closed", "dropped_closed_lines",
	"breaker_opened", "breaker_probes", "breaker_closed",
	"reconnects", "flushes_deferred", "lines_too_long", "lines_rejected",
	"datagrams_returned", "lines_returned",
}

// String returns the stat's metric-name suffix, such as "datagrams_sent".
func (s Stat) String() string {
	if s < numStats {
		return statNames[s]
	}
	return "stat(" + strconv.Itoa(int(s)) + ")"
}

// NumStats is the number of [Stat] values.
const NumStats = int(numStats)

// SelfCounters are the shipper's own counters, sharded so that goroutines
// adding to them do not share cache lines. Any goroutine may use any shard;
// giving each goroutine its own keeps them apart. Adding never allocates.
// The zero value is not usable; use [NewSelfCounters].
type SelfCounters struct {
	shards []CounterShard
}

// CounterShard is one padded shard of [SelfCounters].
type CounterShard struct {
	_ cpu.CacheLinePad
	v [numStats]atomic.Uint64
	_ cpu.CacheLinePad
}

// NewSelfCounters returns counters with n shards (at least one).
func NewSelfCounters(n int) *SelfCounters {
	return &SelfCounters{shards: make([]CounterShard, max(n, 1))}
}

// Shard returns shard i, modulo the number of shards.
func (c *SelfCounters) Shard(i int) *CounterShard { return &c.shards[uint(i)%uint(len(c.shards))] }

// Add adds n to the counter s. It is safe for concurrent use.
func (sh *CounterShard) Add(s Stat, n uint64) { sh.v[s].Add(n) }

// Counts is a snapshot of [SelfCounters], indexed by [Stat].
type Counts [numStats]uint64

// Snapshot sums the shards. It is safe for concurrent use with Add; each
// counter is read atomically, not the set of them at one instant.
func (c *SelfCounters) Snapshot() (s Counts) {
	for i := range c.shards {
		for j := range s {
			s[j] += c.shards[i].v[j].Load()
		}
	}
	return s
}

// Dropped returns the datagrams and lines dropped for every reason.
func (s *Counts) Dropped() (datagrams, lines uint64) {
	for st := StatDroppedOldest; st <= StatDroppedClosedLines; st += 2 {
		datagrams += s[st]
		lines += s[st+1]
	}
	return datagrams, lines
}

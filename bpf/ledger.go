package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Ledger is one program's drop ledger summed over all CPUs. Its counts
// are of events: for a ring-buffer program,
//
//	Seen == Emitted + RingFull + SampledOut + Pending
//
// holds exactly once the program is detached and its runs flushed; while
// it runs, a read may catch an event between its counts.
type Ledger struct {
	Seen       uint64 // events the program was called for
	Emitted    uint64 // events in records submitted to the ring buffer
	RingFull   uint64 // events in records lost because the ring had no room
	SampledOut uint64 // events skipped by sampling
	// RingFullEvents weighs each event lost to a full ring by the sample
	// rate it was taken at: the events it stood for. Without sampling it
	// equals RingFull.
	RingFullEvents uint64
	// Records counts the records submitted, each standing for one event
	// or, for the by-process syscall program, for a run of them.
	Records uint64
	// Pending counts the events in runs that CPUs have not submitted yet
	// (by-process syscall program only: see [Syscalls.FlushRuns]).
	Pending uint64
}

// Lost returns the events that produced no record.
func (l Ledger) Lost() uint64 { return l.RingFull + l.SampledOut }

// Balanced reports whether every event seen is accounted for.
func (l Ledger) Balanced() bool { return l.Seen == l.Emitted+l.RingFull+l.SampledOut+l.Pending }

// ledgerSlots mirrors LEDGER_SLOTS in include/record.h.
const ledgerSlots = 7

// readLedger sums program p's slots of a per-CPU ledger array.
func readLedger(m *ebpf.Map, p Program, perCPU *[]uint64) (Ledger, error) {
	var sums [ledgerSlots]uint64
	for slot := range uint32(ledgerSlots) {
		key := uint32(p)*ledgerSlots + slot
		if err := m.Lookup(key, perCPU); err != nil {
			return Ledger{}, fmt.Errorf("read %s ledger slot %d: %w", p, slot, err)
		}
		for _, n := range *perCPU {
			sums[slot] += n
		}
	}
	return Ledger{Seen: sums[0], Emitted: sums[1], RingFull: sums[2], SampledOut: sums[3],
		RingFullEvents: sums[4], Records: sums[5], Pending: sums[6]}, nil
}

package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Ledger is a program's drop ledger summed over all CPUs. For a ring-buffer
// program, Seen == Emitted + RingFull + SampledOut holds exactly once the
// program is detached; while it runs, a read may catch an event between its
// counts.
type Ledger struct {
	Seen       uint64 // events the program was called for
	Emitted    uint64 // records submitted to the ring buffer
	RingFull   uint64 // records lost because the ring had no room
	SampledOut uint64 // events skipped by sampling
}

// Lost returns the events that produced no record.
func (l Ledger) Lost() uint64 { return l.RingFull + l.SampledOut }

// ledgerSlots mirrors enum ledger_slot in include/record.h.
const ledgerSlots = 4

// readLedger sums a per-CPU array of ledgerSlots counters.
func readLedger(m *ebpf.Map) (Ledger, error) {
	var sums [ledgerSlots]uint64
	var perCPU []uint64
	for slot := range uint32(ledgerSlots) {
		if err := m.Lookup(slot, &perCPU); err != nil {
			return Ledger{}, fmt.Errorf("read ledger slot %d: %w", slot, err)
		}
		for _, n := range perCPU {
			sums[slot] += n
		}
	}
	return Ledger{Seen: sums[0], Emitted: sums[1], RingFull: sums[2], SampledOut: sums[3]}, nil
}

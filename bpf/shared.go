package bpf

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// RingOptions size the BPF ring buffer and set when its submits wake the
// reader. The zero value gives the defaults.
type RingOptions struct {
	// Size of the ring in bytes: a power of two and a multiple of the page
	// size. Zero means [DefaultRingSize].
	Size uint32
	// WakeupBytes is how many queued bytes make a submit wake the reader,
	// at most once a jiffy on each CPU, however many records follow; below
	// it, records are submitted with BPF_RB_NO_WAKEUP and wait for the
	// reader's timer. Zero means a quarter of Size; 1 wakes on any record.
	WakeupBytes uint64
	// Shards gives each possible CPU a ring of its own, of Size bytes, that
	// programs on that CPU write to: CPUs then never contend on one ring,
	// at the cost of a ring's memory per CPU. Read them with
	// [Shared.Shards] instead of [Shared.Events].
	Shards bool
}

// DefaultRingSize is the ring size used when [RingOptions.Size] is zero.
const DefaultRingSize = 256 << 10

func (o RingOptions) withDefaults() (RingOptions, error) {
	if o.Size == 0 {
		o.Size = DefaultRingSize
	}
	page := uint32(os.Getpagesize())
	if o.Size&(o.Size-1) != 0 || o.Size%page != 0 {
		return o, fmt.Errorf("ring size %d is not a power of two multiple of the page size %d", o.Size, page)
	}
	if o.WakeupBytes == 0 {
		o.WakeupBytes = uint64(o.Size / 4)
	}
	return o, nil
}

// Shared holds what all collectors share: the ring buffer of discrete
// events, the drop ledger, each CPU's last forced wakeup, and the kernel
// BTF while collectors load. Load every collector, then call
// [Shared.ReleaseBTF] (the BTF costs tens of MB). Its methods may be
// called from any goroutine except Close.
type Shared struct {
	events, ledger *ebpf.Map
	wakeupJiffy    *ebpf.Map   // each CPU's jiffy of its last forced wakeup
	shards         *ebpf.Map   // array of the rings, one per CPU (one empty slot without Shards)
	shardRings     []*ebpf.Map // with Shards, in CPU order
	shardSize      uint32
	wakeupBytes    uint64
	defaultWakeup  bool // submits pass flags 0 (only to measure against)
	btf            *btf.Cache
}

// NewShared creates the shared maps.
func NewShared(ring RingOptions) (_ *Shared, err error) {
	ring, err = ring.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("create shared maps: %w", err)
	}
	s := &Shared{shardSize: uint32(os.Getpagesize()), wakeupBytes: ring.WakeupBytes, btf: btf.NewCache()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	size, slots := ring.Size, 1
	if ring.Shards {
		// Programs write to their CPU's ring: the shared one is left
		// empty, and as small as a ring can be.
		if slots, err = ebpf.PossibleCPU(); err != nil {
			return nil, fmt.Errorf("create ring shards: %w", err)
		}
		size, s.shardSize = s.shardSize, ring.Size
	}
	if s.events, err = ebpf.NewMap(&ebpf.MapSpec{Name: "events", Type: ebpf.RingBuf, MaxEntries: size}); err != nil {
		return nil, fmt.Errorf("create ring buffer: %w", err)
	}
	s.shards, err = ebpf.NewMap(&ebpf.MapSpec{Name: "events_shards", Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4,
		MaxEntries: uint32(slots), InnerMap: &ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: s.shardSize}})
	if err != nil {
		return nil, fmt.Errorf("create ring shards: %w", err)
	}
	if ring.Shards {
		if s.shardRings, err = ringbuf.NewShardRings(s.shards, s.shardSize); err != nil {
			return nil, err
		}
	}
	s.ledger, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "ledger", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: numPrograms * ledgerSlots,
	})
	if err != nil {
		return nil, fmt.Errorf("create drop ledger: %w", err)
	}
	s.wakeupJiffy, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "wakeup_jiffy", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("create wakeup limit: %w", err)
	}
	return s, nil
}

// Events returns the ring buffer, for a reader. With [RingOptions.Shards]
// no program writes to it: read [Shared.Shards].
func (s *Shared) Events() *ebpf.Map { return s.events }

// Shards returns the rings of each CPU in CPU order, for a reader, or nil
// without [RingOptions.Shards].
func (s *Shared) Shards() []*ebpf.Map { return s.shardRings }

// Ledger reads program p's drop ledger, summed over CPUs.
func (s *Shared) Ledger(p Program) (Ledger, error) {
	var perCPU []uint64
	return readLedger(s.ledger, p, &perCPU)
}

// Ledgers reads every program's drop ledger, indexed by [Program].
func (s *Shared) Ledgers() ([]Ledger, error) {
	var perCPU []uint64
	all := make([]Ledger, numPrograms)
	for p := range Program(numPrograms) {
		l, err := readLedger(s.ledger, p, &perCPU)
		if err != nil {
			return nil, err
		}
		all[p] = l
	}
	return all, nil
}

// ReleaseBTF drops the kernel BTF parsed while loading collectors.
func (s *Shared) ReleaseBTF() { s.btf = nil }

// Close releases the shared maps; collectors keep their own references.
func (s *Shared) Close() error {
	var errs []error
	for _, m := range append([]*ebpf.Map{s.events, s.shards, s.ledger, s.wakeupJiffy}, s.shardRings...) {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// load loads a collector's objects from spec into to, handing it the shared
// maps and setting the wakeup threshold.
func (s *Shared) load(name string, spec *ebpf.CollectionSpec, to any) error {
	repl := make(map[string]*ebpf.Map, 4)
	if m, ok := spec.Maps["events"]; ok {
		m.MaxEntries = s.events.MaxEntries()
		repl["events"] = s.events
	}
	if m, ok := spec.Maps["events_shards"]; ok {
		m.MaxEntries = s.shards.MaxEntries()
		m.InnerMap.MaxEntries = s.shardSize
		repl["events_shards"] = s.shards
	}
	if v, ok := spec.Variables["ring_shards"]; ok {
		if err := v.Set(s.shardRings != nil); err != nil {
			return fmt.Errorf("load %s collector: set ring shards: %w", name, err)
		}
	}
	if _, ok := spec.Maps["ledger"]; ok {
		repl["ledger"] = s.ledger
	}
	if _, ok := spec.Maps["wakeup_jiffy"]; ok {
		repl["wakeup_jiffy"] = s.wakeupJiffy
	}
	if v, ok := spec.Variables["wakeup_bytes"]; ok {
		if err := v.Set(s.wakeupBytes); err != nil {
			return fmt.Errorf("load %s collector: set wakeup threshold: %w", name, err)
		}
	}
	if v, ok := spec.Variables["default_wakeup"]; ok {
		if err := v.Set(s.defaultWakeup); err != nil {
			return fmt.Errorf("load %s collector: set default wakeup: %w", name, err)
		}
	}
	cache := s.btf
	if cache == nil {
		cache = btf.NewCache()
	}
	err := spec.LoadAndAssign(to, &ebpf.CollectionOptions{MapReplacements: repl, Cache: cache})
	if err != nil {
		return fmt.Errorf("load %s collector: %w", name, verifierDetail(err))
	}
	return nil
}

// verifierDetail keeps the tail of a verifier log in the error, where the
// reason for a rejection is.
func verifierDetail(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w\n%+3v", err, ve)
	}
	return err
}

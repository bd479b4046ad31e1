package ringbuf

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
)

// ShardsSpec returns the spec of an array of n BPF ring buffers of size
// bytes each (BPF_MAP_TYPE_ARRAY_OF_MAPS), for programs that write to the
// ring at the index of the CPU they run on (bpf_get_smp_processor_id), so
// that producers on different CPUs never contend on one ring. Make n the
// number of possible CPUs ([ebpf.PossibleCPU]) and fill the array with
// [NewShardRings].
func ShardsSpec(n int, size uint32) *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Type:       ebpf.ArrayOfMaps,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: uint32(n),
		InnerMap:   &ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size},
	}
}

// NewShardRings creates a ring buffer of size bytes for each index of
// outer, an array of ring buffers such as [ShardsSpec] describes, stores
// it there and returns the rings in index order, for [NewShardedDrainer].
// The caller closes the rings.
func NewShardRings(outer *ebpf.Map, size uint32) ([]*ebpf.Map, error) {
	if outer.Type() != ebpf.ArrayOfMaps {
		return nil, fmt.Errorf("create shard rings: %v is not an array of maps", outer.Type())
	}
	rings := make([]*ebpf.Map, 0, outer.MaxEntries())
	fail := func(err error) ([]*ebpf.Map, error) {
		for _, r := range rings {
			r.Close()
		}
		return nil, fmt.Errorf("create shard rings: %w", err)
	}
	for i := range outer.MaxEntries() {
		r, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
		if err != nil {
			return fail(err)
		}
		rings = append(rings, r)
		if err := outer.Put(i, r); err != nil {
			return fail(fmt.Errorf("store ring %d: %w", i, err))
		}
	}
	return rings, nil
}

// ShardedDrainer drains several kernel rings, the shards (one per CPU, as
// [NewShardRings] makes them), each with its own [Drainer] into its own
// lane of a [Lanes], which one consumer merges. Records from one shard
// keep their order; there is no order between shards.
//
// Each shard is drained on its own goroutine, blocked in the kernel while
// its ring is empty, so a ShardedDrainer suits a few shards; on a small
// host one ring and one [Drainer] do.
//
// One goroutine at a time may call [ShardedDrainer.RunInto]. Any goroutine
// may call [ShardedDrainer.Stats], [ShardedDrainer.Fill] (until Close) and
// [ShardedDrainer.Close]. The zero value is not usable; use
// [NewShardedDrainer].
type ShardedDrainer[T any] struct {
	shards []*Drainer[T]
}

// NewShardedDrainer returns a ShardedDrainer of the ring buffer maps rings,
// each drained as [NewDrainer] would with decode and opts.
func NewShardedDrainer[T any](rings []*ebpf.Map, decode Decoder[T], opts DrainOptions) (*ShardedDrainer[T], error) {
	if len(rings) == 0 {
		return nil, errors.New("create sharded drainer: no rings")
	}
	s := &ShardedDrainer[T]{shards: make([]*Drainer[T], 0, len(rings))}
	for i, r := range rings {
		d, err := NewDrainer(r, decode, opts)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("shard %d: %w", i, err), s.Close())
		}
		s.shards = append(s.shards, d)
	}
	return s, nil
}

// NumShards returns the number of shards.
func (s *ShardedDrainer[T]) NumShards() int { return len(s.shards) }

// Run drains every shard as [Drainer.Run] does, each on its own goroutine,
// handing each record to emit, until ctx is done and every shard has been
// read to the end. emit is called from all those goroutines at once. If a
// shard fails, the others stop as if ctx were done. It returns the shards'
// errors.
func (s *ShardedDrainer[T]) Run(ctx context.Context, emit func(*T)) error {
	return s.each(ctx, func(ctx context.Context, i int, d *Drainer[T]) error { return d.Run(ctx, emit) })
}

// RunInto drains shard i into lane i of dst, which must have one lane per
// shard, as [Drainer.RunInto] does, each on its own goroutine, until ctx is
// done and every shard has been read to the end. If a shard fails, the
// others stop as if ctx were done. It returns the shards' errors.
func (s *ShardedDrainer[T]) RunInto(ctx context.Context, dst *Lanes[T]) error {
	if dst.NumLanes() != len(s.shards) {
		return fmt.Errorf("drain shards: %d lanes for %d shards", dst.NumLanes(), len(s.shards))
	}
	return s.each(ctx, func(ctx context.Context, i int, d *Drainer[T]) error { return d.RunInto(ctx, dst.Lane(i)) })
}

// each runs run for every shard on a goroutine of its own, until all
// return; the first to fail stops the others.
func (s *ShardedDrainer[T]) each(ctx context.Context, run func(context.Context, int, *Drainer[T]) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(s.shards))
	var wg sync.WaitGroup
	for i, d := range s.shards {
		wg.Go(func() {
			if err := run(ctx, i, d); err != nil {
				errs[i] = fmt.Errorf("shard %d: %w", i, err)
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stats returns the sum of the shards' counts.
func (s *ShardedDrainer[T]) Stats() DrainStats {
	var t DrainStats
	for _, d := range s.shards {
		st := d.Stats()
		t.Records += st.Records
		t.Bytes += st.Bytes
		t.DecodeErrors += st.DecodeErrors
		t.Dropped += st.Dropped
	}
	return t
}

// Fill returns the fill of the fullest shard, 0 to 1.
func (s *ShardedDrainer[T]) Fill() float64 {
	f := 0.0
	for _, d := range s.shards {
		f = max(f, d.Fill())
	}
	return f
}

// Close closes every shard's drainer; see [Drainer.Close].
func (s *ShardedDrainer[T]) Close() error {
	errs := make([]error, 0, len(s.shards))
	for _, d := range s.shards {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

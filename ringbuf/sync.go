package ringbuf

import (
	"context"
	"fmt"
	"os"
	"sync"
)

// syncer lets other goroutines wait until the drain goroutine has read the
// kernel ring to its end ([Drainer.Sync]). Each Sync asks for a new
// generation; the drain goroutine notes the generation asked for before it
// reads the ring, and once it has found the ring empty, marks that
// generation done.
type syncer struct {
	mu      sync.Mutex
	asked   uint64        // generations asked for
	done    uint64        // generations served
	running bool          // a Run or RunInto is in progress
	changed chan struct{} // made by a waiting Sync, closed when done or running change
}

// want returns the generation asked for so far, for the drain goroutine to
// serve once it has found the ring empty.
func (s *syncer) want() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked
}

// serve marks every generation up to gen done.
func (s *syncer) serve(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen > s.done {
		s.done = gen
		s.broadcast()
	}
}

// setRunning records whether a run is in progress; a run that ends serves
// every generation asked for, since no one is left to read the ring.
func (s *syncer) setRunning(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = on
	if !on {
		s.done = s.asked
	}
	s.broadcast()
}

// broadcast wakes the Syncs waiting; with none, it allocates nothing.
func (s *syncer) broadcast() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// Sync returns once the drain goroutine has handed on every record the
// kernel ring held when Sync was called, waking it if it sleeps: a caller
// about to ship what the records added up to calls it first, so that the
// drain need not wake often between shipments. It returns at once if no
// Run or RunInto is in progress, and ctx's error if ctx is done first. Any
// goroutine may call it.
func (d *Drainer[T]) Sync(ctx context.Context) error {
	s := &d.syncer
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		if d.closed.Load() {
			return fmt.Errorf("sync drainer: %w", os.ErrClosed)
		}
		return nil
	}
	s.asked++
	gen := s.asked
	s.mu.Unlock()
	if err := d.waiter.wake(); err != nil {
		return fmt.Errorf("sync drainer: %w", err)
	}
	for {
		s.mu.Lock()
		if s.done >= gen {
			s.mu.Unlock()
			return nil
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("sync drainer: %w", ctx.Err())
		}
	}
}

// Sync syncs every shard, as [Drainer.Sync] does.
func (s *ShardedDrainer[T]) Sync(ctx context.Context) error {
	for i, d := range s.shards {
		if err := d.Sync(ctx); err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return nil
}

// Package ringbuf moves fixed-size events from the kernel's BPF ring buffer to
// the aggregator: a drain of the kernel ring and lock-free user-space rings.
//
// # Drain
//
// A [Drainer] reads records from a BPF ring buffer map, decodes each into a
// reused value and hands it on without allocating.
//
// # User-space rings
//
// A [Ring] is a bounded single-producer single-consumer queue of values: one
// goroutine pushes, one goroutine pops, and neither takes a lock or
// allocates. [Lanes] gives each of several producers its own Ring and merges
// them for one consumer.
//
// Moving items one at a time between two cores can cost a cache-line
// transfer per item, not much less than a buffered channel. Moving them in
// batches ([Ring.PushBatch], [Ring.PopBatch]) shares that cost between all
// the items of a batch and is an order of magnitude faster; use batches on
// hot paths.
//
// A consumer that finds a ring empty should not poll it without pause: each
// poll pulls the producer's cache lines to the consumer's core and slows the
// producer. Yielding a few times and then sleeping for some microseconds
// lets items pile up and be taken in one batch.
//
// # Overflow
//
// What a push into a full ring does is fixed when the ring is made, by
// [RingOptions.Policy]:
//
//   - [RejectNewest] (the default) refuses the new item and counts it.
//   - [OverwriteOldest] discards the oldest unread item to make room and
//     counts it. The consumer never sees a partly overwritten item.
//   - [Block] makes [Ring.PushWait] and [Ring.PushBatchWait] wait for room
//     until their context is done.
//
// Every item is accounted for in [RingStats]: each accepted item is popped,
// overwritten or still queued, and each refused one is counted as dropped
// (or, under Block, left with the caller).
package ringbuf

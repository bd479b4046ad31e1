// Package ringbuf moves fixed-size events from the kernel's BPF ring buffer to
// the aggregator: a drain of the kernel ring and lock-free user-space rings.
//
// # Drain
//
// A [Drainer] reads records from a BPF ring buffer map, decodes them into a
// reused batch and hands the batch on without allocating: to a function
// ([Drainer.Run]) or into a [Ring] or a [Lane] ([Drainer.RunInto]), whose
// policy decides what a full ring does; what it drops is counted in
// [DrainStats].
//
// The kernel side decides when the reader wakes: a program submits records
// with BPF_RB_NO_WAKEUP and forces a wakeup (BPF_RB_FORCE_WAKEUP) once the
// ring is filling up, and the Drainer reads the ring at least every
// [DrainOptions.Poll] as well. Between wakeups it sleeps, however many
// records wait below the threshold. When its context is done it reads the
// ring to the end once more, so a caller that stops the programs first
// loses nothing.
//
// The Drainer maps the ring itself rather than reading it through cilium's
// ringbuf.Reader, for two reasons:
//
//   - cilium's Reader waits level-triggered: its wait returns at once while
//     the ring holds any record. A reader that must sleep until a forced
//     wakeup or its timer, with records below the wakeup threshold left
//     waiting, cannot do so through it. Worse, when the syscalls-by-process
//     program is attached, the reader's own system calls write records, so
//     a reader that reads until the ring is empty never gets there: a
//     Drainer built on cilium's Reader used a whole CPU on an idle host
//     (511 ticks of CPU in 5 s, against 9 for this one). The Drainer's wait
//     is edge-triggered: it returns for a new wakeup, not for records that
//     wait.
//   - cilium's Reader takes a lock and writes the consumer position for
//     every record; the Drainer gives the space back to the kernel once per
//     batch of [DrainBatch] records. Draining costs about 15 ns of CPU a
//     record on the development machines, the push into a Ring included,
//     against about 30 ns for cilium's ReadInto alone.
//
// # Shards
//
// On a host with many CPUs producing, one ring is one lock that every
// producer takes. [ShardsSpec] and [NewShardRings] make one ring per CPU,
// for programs that write to the ring of the CPU they run on, and a
// [ShardedDrainer] drains each into its own lane of a [Lanes]
// ([ShardedDrainer.RunInto]), or hands every shard's records to one
// function ([ShardedDrainer.Run]; bpfstatd's --ring-shards).
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

package ringbuf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/cpu"
)

// Decoder decodes one raw ring-buffer sample into *T without allocating. It
// returns an error for a sample of the wrong size or kind; the [Drainer]
// counts it and skips the sample. The sample is only valid during the call,
// and *into holds an earlier record: a Decoder sets all of it.
type Decoder[T any] func(sample []byte, into *T) error

// DrainOptions tune a [Drainer]. The zero value gives the defaults.
type DrainOptions struct {
	// Poll is how long the reader waits for a wakeup before it reads the
	// ring anyway: records submitted with BPF_RB_NO_WAKEUP below the
	// kernel's forced-wakeup threshold wait at most this long, and so may
	// a record submitted without flags while the reader was busy reading.
	// Zero means [DefaultPoll]. The wait is counted in whole milliseconds,
	// so a Poll under a millisecond waits one.
	Poll time.Duration

	// FlushWait bounds how long, once the context of [Drainer.RunInto] is
	// done, the final drain waits for room in a [Block] ring: records that
	// still do not fit are counted in [DrainStats.Dropped]. Zero means
	// [DefaultFlushWait].
	FlushWait time.Duration
}

// Defaults for a zero [DrainOptions].
const (
	DefaultPoll      = 10 * time.Millisecond
	DefaultFlushWait = time.Second
)

// DrainBatch is the number of records a [Drainer] decodes before it hands
// them on together; it hands on fewer when the kernel ring runs dry.
const DrainBatch = 256

// DrainStats counts what a [Drainer] has read.
type DrainStats struct {
	Records      uint64 // samples decoded and handed on
	Bytes        uint64 // sample bytes read, decoded or not
	DecodeErrors uint64 // samples skipped because they did not decode
	// Dropped counts records handed to a ring by [Drainer.RunInto] that
	// its consumer will never see: refused because the ring was full
	// ([RejectNewest], or [Block] after [DrainOptions.FlushWait]), or
	// discarded unread to make room ([OverwriteOldest]).
	Dropped uint64
}

// Sink is a user-space ring that [Drainer.RunInto] pushes records into: a
// [*Ring] or a [Lane]. The drainer is then the ring's producer.
type Sink[T any] interface {
	sinkRing() *Ring[T]
}

func (r *Ring[T]) sinkRing() *Ring[T] { return r }

func (l Lane[T]) sinkRing() *Ring[T] { return l.r }

// Drainer reads fixed-size records from a kernel BPF ring buffer, decodes
// them in batches and hands each batch on, to a function ([Drainer.Run]) or
// into a user-space ring ([Drainer.RunInto]), decoding straight into the
// ring's free slots when it has room. Nothing is allocated per record.
//
// It sleeps until the kernel wakes the reader or [DrainOptions.Poll] has
// passed, then reads every record the ring holds, from its own mapping of
// the ring, giving the space back to the kernel once per batch rather than
// once per record as cilium's ringbuf.Reader does (which, with its lock,
// costs more than all the rest of the drain). Its wait is edge-triggered:
// woken by a forced wakeup, it drains the ring and sleeps again, where a
// level-triggered reader such as cilium's returns from every wait while
// the ring holds a record and so chases a busy producer, a system call for
// every few records.
//
// One goroutine at a time, the drain goroutine, may call [Drainer.Run] or
// [Drainer.RunInto]. Any goroutine may call [Drainer.Stats], and
// [Drainer.Fill] until [Drainer.Close]. Close may be called from any
// goroutine; it interrupts a Run in progress and waits for it to return.
// The zero value is not usable; use [NewDrainer].
type Drainer[T any] struct {
	// Set by NewDrainer, then only read.
	waiter    *waiter
	ring      *kernelRing
	decode    Decoder[T]
	poll      time.Duration
	flushWait time.Duration

	// Owned by the drain goroutine, which holds mu while it runs.
	mu        sync.Mutex
	batch     []T // DrainBatch long, for records that do not go straight into a sink
	count     DrainStats
	published DrainStats
	// A RunInto into a Block ring waits for room until runCtx is done,
	// then until flushCtx is.
	runCtx, flushCtx context.Context
	stopFlush        context.CancelFunc
	overwritten      uint64 // the sink's Overwritten count, last seen
	_                cpu.CacheLinePad

	syncer syncer // for Sync, from any goroutine

	// Read by any goroutine.
	unmapMu                               sync.RWMutex // Fill against Close
	closed                                atomic.Bool
	records, bytes, decodeErrors, dropped atomic.Uint64
	_                                     cpu.CacheLinePad
}

// NewDrainer returns a Drainer of the ring buffer map events.
func NewDrainer[T any](events *ebpf.Map, decode Decoder[T], opts DrainOptions) (*Drainer[T], error) {
	if opts.Poll < 0 || opts.FlushWait < 0 {
		return nil, fmt.Errorf("create drainer: negative poll interval %v or flush wait %v", opts.Poll, opts.FlushWait)
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultPoll
	}
	if opts.FlushWait == 0 {
		opts.FlushWait = DefaultFlushWait
	}
	if events.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("create drainer: %v is not a ring buffer", events.Type())
	}
	k, err := mapKernelRing(events)
	if err != nil {
		return nil, fmt.Errorf("create drainer: %w", err)
	}
	w, err := newWaiter(events.FD())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create drainer: %w", err), k.unmap())
	}
	return &Drainer[T]{
		waiter:    w,
		ring:      k,
		decode:    decode,
		poll:      opts.Poll,
		flushWait: opts.FlushWait,
		batch:     make([]T, DrainBatch),
	}, nil
}

// Run hands every record to emit until ctx is done, then reads what is left
// in the ring and returns nil. emit's argument is only valid during the
// call. Stop the kernel programs that write to the ring before cancelling
// ctx, and the final read leaves nothing behind. Only the drain goroutine
// may call Run; emit is called on it.
func (d *Drainer[T]) Run(ctx context.Context, emit func(*T)) error {
	return d.run(ctx, nil, func(b []T) {
		for i := range b {
			emit(&b[i])
		}
	})
}

// RunInto pushes every record into dst, a batch at a time, until ctx is
// done, then reads what is left in the kernel ring, pushes it and returns
// nil. The drain goroutine becomes dst's producer: no other goroutine may
// push into dst while RunInto runs.
//
// When dst is full, its policy decides: [RejectNewest] drops the records
// that do not fit, [OverwriteOldest] discards the oldest, and [Block] waits
// for room (so the kernel ring fills instead, and the kernel counts what it
// cannot write) until ctx is done, then at most [DrainOptions.FlushWait].
// Records lost in dst are counted in [DrainStats.Dropped] as well as in
// dst's [RingStats]. A consumer that wants every record keeps popping
// until RunInto has returned and dst is empty.
func (d *Drainer[T]) RunInto(ctx context.Context, dst Sink[T]) error {
	r := dst.sinkRing()
	return d.run(ctx, r, func(b []T) { d.push(r, b) })
}

// run drains the ring, handing each batch to hand, until ctx is done and
// the ring has been read to the end once more. sink is the ring hand pushes
// into, if any.
func (d *Drainer[T]) run(ctx context.Context, sink *Ring[T], hand func([]T)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return fmt.Errorf("drain ring buffer: %w", os.ErrClosed)
	}
	d.runCtx = ctx
	if sink != nil {
		d.overwritten = sink.overwritten.Load()
	}
	defer d.endRun()
	defer d.publish()
	d.syncer.setRunning(true)
	defer d.syncer.setRunning(false)
	if ctx.Err() == nil {
		stop := context.AfterFunc(ctx, func() { _ = d.waiter.wake() })
		defer stop()
	}
	deadline := time.Now().Add(d.poll)
	for {
		// Look at ctx and at the syncs asked for before reading: a read
		// that starts after finds everything written before.
		done := ctx.Err() != nil
		gen := d.syncer.want()
		full, err := d.step(sink, hand, DrainBatch)
		switch {
		case err != nil:
			return fmt.Errorf("drain ring buffer: %w", err)
		case d.closed.Load():
			return fmt.Errorf("drain ring buffer: %w", os.ErrClosed)
		case full:
			continue
		case done:
			return nil
		}
		d.syncer.serve(gen) // the counts are published: the batch was not full
		// The ring is empty, or its next sample is still being written:
		// sleep until a wakeup or the timer.
		now := time.Now()
		if !now.Before(deadline) {
			deadline = now.Add(d.poll)
			continue
		}
		if err := d.waiter.wait(deadline.Sub(now)); err != nil {
			return fmt.Errorf("drain ring buffer: %w", err)
		}
	}
}

// endRun forgets the contexts of a run.
func (d *Drainer[T]) endRun() {
	if d.stopFlush != nil {
		d.stopFlush()
	}
	d.runCtx, d.flushCtx, d.stopFlush = nil, nil, nil
}

// step reads a batch of up to max records from the kernel ring and hands
// it on. If sink has room, the records are decoded in place into its free
// slots and published with one store; otherwise they are decoded into
// d.batch and handed to hand, which applies sink's policy. step reports
// whether the batch was full, so that more may be waiting.
func (d *Drainer[T]) step(sink *Ring[T], hand func([]T), max int) (full bool, err error) {
	if sink != nil {
		if slots := sink.free(max); len(slots) > 0 {
			n, full, err := d.fill(slots)
			sink.commit(n)
			d.count.Records += uint64(n)
			d.publishSome(full)
			return full, err
		}
	}
	n, full, err := d.fill(d.batch[:max])
	if n > 0 {
		hand(d.batch[:n])
		d.count.Records += uint64(n)
	}
	d.publishSome(full)
	return full, err
}

// fill decodes the samples the kernel ring holds into dst, returns how
// many it decoded, and reports whether it stopped because dst was full. It
// is the hot loop: what it updates per sample lives in registers.
func (d *Drainer[T]) fill(dst []T) (n int, full bool, err error) {
	c := d.ring.begin()
	decode := d.decode
	var bytes, bad uint64
	for n < len(dst) {
		s, ok := c.next()
		if !ok {
			if c.skip() {
				continue
			}
			break
		}
		bytes += uint64(len(s))
		if decode(s, &dst[n]) != nil {
			bad++
			continue
		}
		n++
	}
	d.ring.release(&c)
	d.count.Bytes += bytes
	d.count.DecodeErrors += bad
	return n, n == len(dst), c.err
}

// publishEvery is how many records the drain goroutine may read without
// publishing its counts while the ring keeps it busy. Each store is a
// full barrier, which waits for the stores of the batch to reach memory.
const publishEvery = 4 * DrainBatch

// publishSome publishes the counts when the drain is about to pause (the
// last batch was not full) or publishEvery records have been read since
// they were last published.
func (d *Drainer[T]) publishSome(full bool) {
	if !full || d.count.Records-d.published.Records >= publishEvery {
		d.publish()
	}
}

// publish stores the counts that changed where Stats reads them.
func (d *Drainer[T]) publish() {
	c, p := &d.count, &d.published
	if c.Records != p.Records {
		d.records.Store(c.Records)
	}
	if c.Bytes != p.Bytes {
		d.bytes.Store(c.Bytes)
	}
	if c.DecodeErrors != p.DecodeErrors {
		d.decodeErrors.Store(c.DecodeErrors)
	}
	if c.Dropped != p.Dropped {
		d.dropped.Store(c.Dropped)
	}
	*p = *c
}

// push pushes a batch into r and counts the records r loses.
func (d *Drainer[T]) push(r *Ring[T], b []T) {
	var n int
	switch r.policy {
	case Block:
		n, _ = r.PushBatchWait(d.runCtx, b)
		if n < len(b) {
			m, _ := r.PushBatchWait(d.flushWaitCtx(), b[n:])
			n += m
		}
	case OverwriteOldest:
		n = r.PushBatch(b)
		o := r.overwritten.Load() // written only by the producer: us
		d.count.Dropped += o - d.overwritten
		d.overwritten = o
	default:
		n = r.PushBatch(b)
	}
	d.count.Dropped += uint64(len(b) - n)
}

// flushWaitCtx returns the context that bounds waits for room once the
// run's context is done.
func (d *Drainer[T]) flushWaitCtx() context.Context {
	if d.flushCtx == nil {
		d.flushCtx, d.stopFlush = context.WithTimeout(context.WithoutCancel(d.runCtx), d.flushWait)
	}
	return d.flushCtx
}

// Stats returns the counts so far. They are updated whenever the drain
// pauses, and every 1,024 records while it does not.
func (d *Drainer[T]) Stats() DrainStats {
	return DrainStats{
		Records:      d.records.Load(),
		Bytes:        d.bytes.Load(),
		DecodeErrors: d.decodeErrors.Load(),
		Dropped:      d.dropped.Load(),
	}
}

// Fill returns the share of the kernel ring holding unread records, 0 to 1.
// It returns 0 once Close has been called.
func (d *Drainer[T]) Fill() float64 {
	d.unmapMu.RLock()
	defer d.unmapMu.RUnlock()
	if d.ring.mapped == nil {
		return 0
	}
	return d.ring.fill()
}

// Close releases the ring's mapping and file descriptors. A Run in
// progress returns an error, and Close waits for it; a RunInto waiting for
// room in a [Block] ring returns only once its context is done (and then
// waits at most [DrainOptions.FlushWait]), so cancel first. Closing twice
// returns nil.
func (d *Drainer[T]) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	werr := d.waiter.wake()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unmapMu.Lock()
	defer d.unmapMu.Unlock()
	if err := errors.Join(werr, d.waiter.close(), d.ring.unmap()); err != nil {
		return fmt.Errorf("close drainer: %w", err)
	}
	return nil
}

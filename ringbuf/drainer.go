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
	cebpf "github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/cpu"
)

// Decoder decodes one raw ring-buffer sample into *T without allocating. It
// returns an error for a sample of the wrong size or kind; the [Drainer]
// counts it and skips the sample. The sample is only valid during the call.
type Decoder[T any] func(sample []byte, into *T) error

// DrainOptions tune a [Drainer]. The zero value gives the defaults.
type DrainOptions struct {
	// Poll is how long the reader waits for a wakeup before it reads the
	// ring anyway: records submitted with BPF_RB_NO_WAKEUP below the
	// kernel's forced-wakeup threshold wait at most this long. Zero means
	// [DefaultPoll]. The wait is counted in whole milliseconds, so a Poll
	// under a millisecond waits one.
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
const DrainBatch = 64

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
// them into a reused batch of T and hands the batch on, to a function
// ([Drainer.Run]) or into a user-space ring ([Drainer.RunInto]). Nothing is
// allocated per record.
//
// It waits for the kernel's wakeups, and at most [DrainOptions.Poll], with
// a [cebpf.Reader]; it reads the records the ring holds by mapping the ring
// itself and giving the space back to the kernel once per batch, not once
// per record.
//
// One goroutine at a time, the drain goroutine, may call [Drainer.Run] or
// [Drainer.RunInto]. Any goroutine may call [Drainer.Stats], and
// [Drainer.Fill] until [Drainer.Close]. Close may be called from any
// goroutine; it interrupts a Run in progress and waits for it to return.
// The zero value is not usable; use [NewDrainer].
type Drainer[T any] struct {
	// Set by NewDrainer, then only read.
	reader    *cebpf.Reader
	ring      *kernelRing
	decode    Decoder[T]
	poll      time.Duration
	flushWait time.Duration

	// Owned by the drain goroutine, which holds mu while it runs.
	mu        sync.Mutex
	rec       cebpf.Record
	batch     []T // DrainBatch long
	n         int // decoded records at the start of batch
	count     DrainStats
	published DrainStats
	// A RunInto into a Block ring waits for room until runCtx is done,
	// then until flushCtx is.
	runCtx, flushCtx context.Context
	stopFlush        context.CancelFunc
	overwritten      uint64 // the sink's Overwritten count, last seen
	_                cpu.CacheLinePad

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
	r, err := cebpf.NewReader(events)
	if err != nil {
		return nil, fmt.Errorf("create drainer: %w", err)
	}
	k, err := mapKernelRing(events)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("create drainer: %w", err)
	}
	return &Drainer[T]{
		reader:    r,
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
	if ctx.Err() == nil {
		stop := context.AfterFunc(ctx, func() { _ = d.reader.Flush() })
		defer stop()
	}
	d.reader.SetDeadline(d.deadline())
	flushing := false
	for {
		full, err := d.fill()
		d.handOn(hand)
		if err != nil {
			return fmt.Errorf("drain ring buffer: %w", err)
		}
		if full && !d.closed.Load() && (flushing || ctx.Err() == nil) {
			continue
		}
		if !flushing && ctx.Err() != nil {
			// Make the wait below return at once, after one more read
			// to the end of the ring.
			flushing = true
			if err := d.reader.Flush(); err != nil {
				return fmt.Errorf("flush ring buffer: %w", err)
			}
		}
		// The ring is empty, or its next sample is still being written:
		// wait for a wakeup, the deadline or a flush, then read a record.
		err = d.reader.ReadInto(&d.rec)
		switch {
		case err == nil:
			d.take(d.rec.RawSample)
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, cebpf.ErrFlushed):
			// The reader has just found the ring empty.
			if flushing {
				return nil
			}
			d.reader.SetDeadline(d.deadline())
		default:
			return fmt.Errorf("drain ring buffer: %w", err)
		}
	}
}

// deadline returns the end of the next wait. The reader waits in whole
// milliseconds, rounded down; rounding the deadline up makes it wait Poll.
func (d *Drainer[T]) deadline() time.Time {
	return time.Now().Add(d.poll + time.Millisecond - 1)
}

// endRun forgets the contexts of a run.
func (d *Drainer[T]) endRun() {
	if d.stopFlush != nil {
		d.stopFlush()
	}
	d.runCtx, d.flushCtx, d.stopFlush = nil, nil, nil
}

// fill decodes the samples the kernel ring holds into the batch, and
// reports whether it stopped because the batch was full. It is the hot
// loop: what it updates per sample lives in registers.
func (d *Drainer[T]) fill() (full bool, err error) {
	c := d.ring.begin()
	batch, n, decode := d.batch, d.n, d.decode
	var bytes, bad uint64
	for n < len(batch) {
		s, ok := c.next()
		if !ok {
			if c.skip() {
				continue
			}
			break
		}
		bytes += uint64(len(s))
		if decode(s, &batch[n]) != nil {
			bad++
			continue
		}
		n++
	}
	d.ring.release(&c)
	d.n = n
	d.count.Bytes += bytes
	d.count.DecodeErrors += bad
	return n == len(batch), c.err
}

// take decodes sample into the batch, or counts it as malformed.
func (d *Drainer[T]) take(sample []byte) {
	d.count.Bytes += uint64(len(sample))
	if d.decode(sample, &d.batch[d.n]) != nil {
		d.count.DecodeErrors++
		return
	}
	d.n++
}

// handOn hands the batch to hand, empties it and publishes the counts.
func (d *Drainer[T]) handOn(hand func([]T)) {
	if d.n > 0 {
		hand(d.batch[:d.n])
		d.count.Records += uint64(d.n)
		d.n = 0
	}
	d.publish()
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

// Stats returns the counts so far. They are updated once per batch.
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

// Close releases the reader and the ring's mapping. A Run in progress
// returns an error; Close waits for it. Closing twice returns nil.
func (d *Drainer[T]) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	rerr := d.reader.Close()
	if rerr != nil {
		rerr = fmt.Errorf("close reader: %w", rerr)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unmapMu.Lock()
	defer d.unmapMu.Unlock()
	if err := errors.Join(rerr, d.ring.unmap()); err != nil {
		return fmt.Errorf("close drainer: %w", err)
	}
	return nil
}

package ringbuf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	kring "github.com/cilium/ebpf/ringbuf"
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

// Drainer reads fixed-size records from a kernel BPF ring buffer through
// cilium's [kring.Reader], decodes them in batches and hands each batch on,
// to a function ([Drainer.Run]) or into a user-space ring
// ([Drainer.RunInto]), decoding straight into the ring's free slots when it
// has room. It reads every record into one reused [kring.Record], so nothing
// is allocated per record.
//
// It sleeps until the kernel wakes the reader or [DrainOptions.Poll] has
// passed, then reads the ring until it finds it empty, [DrainBatch] records
// at a time, without waiting between them. The reader's wait is cilium's,
// and level-triggered: woken once, it returns at once from every later wait
// that finds a record, until one finds the ring empty.
//
// One goroutine at a time, the drain goroutine, may call [Drainer.Run] or
// [Drainer.RunInto]. Any goroutine may call [Drainer.Stats],
// [Drainer.Fill] and [Drainer.Close]; Close interrupts a Run in progress
// and waits for it to return. The zero value is not usable; use
// [NewDrainer].
type Drainer[T any] struct {
	// Set by NewDrainer, then only read.
	rd        reader
	decode    Decoder[T]
	wait      time.Duration // from now to the reader's deadline when it sleeps
	flushWait time.Duration

	// Owned by the drain goroutine, which holds mu while it runs.
	mu        sync.Mutex
	rec       kring.Record // every sample is read into it
	batch     []T          // DrainBatch long, for records that do not go straight into a sink
	sleeping  bool         // rd's deadline is in the future: a read may wait
	empty     bool         // the last read found the kernel ring empty
	count     DrainStats
	published DrainStats
	// A RunInto into a Block ring waits for room until runCtx is done,
	// then until flushCtx is.
	runCtx, flushCtx context.Context
	stopFlush        context.CancelFunc
	overwritten      uint64 // the sink's Overwritten count, last seen
	_                cpu.CacheLinePad

	// Read by any goroutine.
	closeMu                               sync.RWMutex // Fill against Close
	closed                                atomic.Bool
	records, bytes, decodeErrors, dropped atomic.Uint64
	_                                     cpu.CacheLinePad
}

// reader is what a [Drainer] uses of cilium's [kring.Reader].
type reader interface {
	ReadInto(rec *kring.Record) error
	SetDeadline(t time.Time)
	Flush() error
	AvailableBytes() int
	BufferSize() int
	Close() error
}

var _ reader = (*kring.Reader)(nil)

// past is a deadline that makes a read return [os.ErrDeadlineExceeded] at
// once when the ring is empty. (The zero time.Time is no deadline.)
var past = time.Unix(0, 1)

// NewDrainer returns a Drainer of the ring buffer map events.
func NewDrainer[T any](events *ebpf.Map, decode Decoder[T], opts DrainOptions) (*Drainer[T], error) {
	if opts.Poll < 0 || opts.FlushWait < 0 {
		return nil, fmt.Errorf("create drainer: negative poll interval %v or flush wait %v", opts.Poll, opts.FlushWait)
	}
	if events.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("create drainer: %v is not a ring buffer", events.Type())
	}
	rd, err := kring.NewReader(events)
	if err != nil {
		return nil, fmt.Errorf("create drainer: %w", err)
	}
	return newDrainer(rd, decode, opts), nil
}

// newDrainer returns a Drainer reading from rd, with valid opts.
func newDrainer[T any](rd reader, decode Decoder[T], opts DrainOptions) *Drainer[T] {
	if opts.Poll == 0 {
		opts.Poll = DefaultPoll
	}
	if opts.FlushWait == 0 {
		opts.FlushWait = DefaultFlushWait
	}
	rd.SetDeadline(past)
	return &Drainer[T]{
		rd:        rd,
		decode:    decode,
		wait:      pollWait(opts.Poll),
		flushWait: opts.FlushWait,
		batch:     make([]T, DrainBatch),
	}
}

// pollWait returns how far from now to set the reader's deadline so that
// it waits poll rounded up to whole milliseconds: the reader waits the
// whole milliseconds to its deadline, rounded down, so a deadline less than
// a millisecond away would not wait at all.
func pollWait(poll time.Duration) time.Duration {
	ms := poll / time.Millisecond
	if poll%time.Millisecond != 0 {
		ms++
	}
	ms = min(ms, math.MaxInt64/time.Millisecond-1) // for a Poll of centuries
	return (ms+1)*time.Millisecond - 1
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
//
// The reader sleeps only once it has found the ring empty; a done ctx
// flushes it ([kring.Reader.Flush]) out of its sleep, and from then on no
// read waits.
func (d *Drainer[T]) run(ctx context.Context, sink *Ring[T], hand func([]T)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return fmt.Errorf("drain ring buffer: %w", os.ErrClosed)
	}
	d.runCtx, d.empty = ctx, false // read what is queued before sleeping
	if sink != nil {
		d.overwritten = sink.overwritten.Load()
	}
	defer d.endRun()
	defer d.publish()
	if ctx.Err() == nil {
		stop := context.AfterFunc(ctx, func() { _ = d.rd.Flush() })
		defer stop()
	}
	for {
		// Look at ctx before reading: a read that starts after ctx is
		// done finds everything written before.
		done := ctx.Err() != nil
		switch {
		case done:
			d.noWait()
		case d.empty:
			d.sleep()
		}
		empty, err := d.step(sink, hand, DrainBatch)
		d.empty = empty
		switch {
		case err != nil:
			return fmt.Errorf("drain ring buffer: %w", err)
		case done && empty:
			return nil
		}
	}
}

// sleep lets the next read wait for a record until the kernel wakes the
// reader, a flush, or the timer.
func (d *Drainer[T]) sleep() {
	d.rd.SetDeadline(time.Now().Add(d.wait))
	d.sleeping = true
}

// noWait makes reads return at once when the ring is empty.
func (d *Drainer[T]) noWait() {
	if d.sleeping {
		d.rd.SetDeadline(past)
		d.sleeping = false
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
// whether it found the kernel ring empty; if not, more may be waiting.
func (d *Drainer[T]) step(sink *Ring[T], hand func([]T), max int) (empty bool, err error) {
	if sink != nil {
		if slots := sink.free(max); len(slots) > 0 {
			n, empty, err := d.fill(slots)
			sink.commit(n)
			d.count.Records += uint64(n)
			d.publishSome(empty || err != nil)
			return empty, err
		}
	}
	n, empty, err := d.fill(d.batch[:max])
	if n > 0 {
		hand(d.batch[:n])
		d.count.Records += uint64(n)
	}
	d.publishSome(empty || err != nil)
	return empty, err
}

// fill decodes the records the kernel ring holds into dst, returns how
// many it decoded, and reports whether it found the ring empty. Only its
// first read may wait, if the drainer sleeps. It is the hot loop: what it
// updates per record lives in registers.
//
// It reads on until the reader reports the ring empty rather than stopping
// at a record that leaves it empty ([kring.Record.Remaining]), so that the
// reader has seen the end of the ring and its next read sleeps: the reader
// returns records that arrived meanwhile first, and a drainer that took
// them as the start of a new batch would chase the producer in batches of
// a record or two.
func (d *Drainer[T]) fill(dst []T) (n int, empty bool, err error) {
	rd, rec, decode := d.rd, &d.rec, d.decode
	var bytes, bad uint64
	for n < len(dst) {
		if err = rd.ReadInto(rec); err != nil {
			break
		}
		if d.sleeping {
			d.noWait()
		}
		s := rec.RawSample
		bytes += uint64(len(s))
		if decode(s, &dst[n]) != nil {
			bad++
		} else {
			n++
		}
	}
	d.count.Bytes += bytes
	d.count.DecodeErrors += bad
	// The reader returns these only once it has read the ring to the end:
	// the timer, and a flush at the end of a run.
	if err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, kring.ErrFlushed)) {
		empty, err = true, nil
	}
	return n, empty, err
}

// publishEvery is how many records the drain goroutine may read without
// publishing its counts while the ring keeps it busy. Each store is a
// full barrier, which waits for the stores of the batch to reach memory.
const publishEvery = 4 * DrainBatch

// publishSome publishes the counts when the drain is about to pause or
// publishEvery records have been read since they were last published.
func (d *Drainer[T]) publishSome(pause bool) {
	if pause || d.count.Records-d.published.Records >= publishEvery {
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

// Fill returns the share of the kernel ring holding unread records, 0 to 1:
// the reader's [kring.Reader.AvailableBytes] over its
// [kring.Reader.BufferSize]. It returns 0 once Close has been called.
func (d *Drainer[T]) Fill() float64 {
	d.closeMu.RLock()
	defer d.closeMu.RUnlock()
	if d.closed.Load() {
		return 0
	}
	// AvailableBytes loads the producer position first: read meanwhile,
	// the ring can look less than empty.
	return max(float64(d.rd.AvailableBytes()), 0) / float64(d.rd.BufferSize())
}

// Close closes the reader, releasing the ring's mapping and file
// descriptors. A Run in progress returns an error wrapping [os.ErrClosed],
// and Close waits for it; a RunInto waiting for room in a [Block] ring
// returns only once its context is done (and then waits at most
// [DrainOptions.FlushWait]), so cancel first. Closing twice returns nil.
func (d *Drainer[T]) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.closeMu.Lock()
	err := d.rd.Close() // interrupts a read, and waits for it
	d.closeMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("close drainer: %w", err)
	}
	return nil
}

package ringbuf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	cebpf "github.com/cilium/ebpf/ringbuf"
)

// Decoder decodes one raw ring-buffer sample into *T without allocating. It
// returns an error for a sample of the wrong size or kind; the [Drainer]
// counts it and skips the sample.
type Decoder[T any] func(sample []byte, into *T) error

// DrainOptions tune a [Drainer]. The zero value gives the defaults.
type DrainOptions struct {
	// Poll is how long the reader waits for a wakeup before it reads the
	// ring anyway: records submitted with BPF_RB_NO_WAKEUP below the
	// kernel's forced-wakeup threshold wait at most this long. Zero means
	// [DefaultPoll].
	Poll time.Duration
}

// DefaultPoll is the reader timer used when [DrainOptions.Poll] is zero.
const DefaultPoll = 10 * time.Millisecond

// DrainStats counts what a [Drainer] has read.
type DrainStats struct {
	Records      uint64 // samples decoded and handed on
	Bytes        uint64 // sample bytes read, decoded or not
	DecodeErrors uint64 // samples skipped because they did not decode
}

// Drainer reads fixed-size records from a kernel BPF ring buffer, decodes
// each into a T it reuses, and hands it on. Nothing is allocated per record.
//
// [Drainer.Run] must be called from one goroutine at a time; [Drainer.Stats]
// and [Drainer.Fill] may be called from any goroutine.
type Drainer[T any] struct {
	reader *cebpf.Reader
	decode Decoder[T]
	poll   time.Duration
	rec    cebpf.Record
	item   T

	records, bytes, decodeErrors atomic.Uint64
}

// NewDrainer returns a Drainer of the ring buffer map events.
func NewDrainer[T any](events *ebpf.Map, decode Decoder[T], opts DrainOptions) (*Drainer[T], error) {
	if opts.Poll < 0 {
		return nil, fmt.Errorf("create drainer: negative poll interval %v", opts.Poll)
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultPoll
	}
	r, err := cebpf.NewReader(events)
	if err != nil {
		return nil, fmt.Errorf("create drainer: %w", err)
	}
	return &Drainer[T]{reader: r, decode: decode, poll: opts.Poll}, nil
}

// Run hands every record to emit until ctx is done, then reads what is left
// in the ring and returns nil. emit's argument is only valid during the call.
// Stop the kernel programs that write to the ring before cancelling ctx, and
// the final read leaves nothing behind.
func (d *Drainer[T]) Run(ctx context.Context, emit func(*T)) error {
	stop := context.AfterFunc(ctx, func() { _ = d.reader.Flush() })
	defer stop()
	for {
		d.reader.SetDeadline(time.Now().Add(d.poll))
		err := d.readAll(emit)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if ctx.Err() != nil {
				return d.flush(emit)
			}
		case errors.Is(err, cebpf.ErrFlushed):
			if ctx.Err() != nil {
				return nil
			}
		default:
			return fmt.Errorf("drain ring buffer: %w", err)
		}
	}
}

// flush reads the records left in the ring after Run was cancelled.
func (d *Drainer[T]) flush(emit func(*T)) error {
	if err := d.reader.Flush(); err != nil {
		return fmt.Errorf("flush ring buffer: %w", err)
	}
	if err := d.readAll(emit); !errors.Is(err, cebpf.ErrFlushed) && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("drain ring buffer: %w", err)
	}
	return nil
}

// readAll hands on records until the reader reports the end of a wait: a
// deadline, a flush, or an error.
func (d *Drainer[T]) readAll(emit func(*T)) error {
	for {
		if err := d.reader.ReadInto(&d.rec); err != nil {
			return err
		}
		d.bytes.Add(uint64(len(d.rec.RawSample)))
		if d.decode(d.rec.RawSample, &d.item) != nil {
			d.decodeErrors.Add(1)
			continue
		}
		d.records.Add(1)
		emit(&d.item)
	}
}

// Stats returns the counts so far.
func (d *Drainer[T]) Stats() DrainStats {
	return DrainStats{Records: d.records.Load(), Bytes: d.bytes.Load(), DecodeErrors: d.decodeErrors.Load()}
}

// Fill returns the share of the kernel ring holding unread records, 0 to 1.
func (d *Drainer[T]) Fill() float64 {
	return float64(d.reader.AvailableBytes()) / float64(d.reader.BufferSize())
}

// Close releases the reader; a Run in progress returns an error.
func (d *Drainer[T]) Close() error {
	if err := d.reader.Close(); err != nil {
		return fmt.Errorf("close drainer: %w", err)
	}
	return nil
}

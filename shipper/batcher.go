package shipper

// DefaultBatchSize is the most datagrams per send call when
// [BatcherOptions.Size] is zero.
const DefaultBatchSize = 32

// BatcherOptions configure a [Batcher]. The zero value works: adaptive
// batches of at most [DefaultBatchSize], highest priority first.
type BatcherOptions struct {
	// Size is the number of datagrams per send call when Fixed, and the
	// largest when adaptive; zero means [DefaultBatchSize].
	Size int
	// Fixed keeps the batch size at Size. Otherwise the size adapts to
	// buffer pressure: it grows by one after a batch the socket took whole,
	// and halves after one it took only in part or refused for want of
	// buffer space.
	Fixed bool
	// FIFO takes datagrams oldest first. Otherwise the highest priority
	// goes first, so that under pressure low-priority datagrams are the ones
	// left queued, and dropped.
	FIFO bool
}

// Batcher decides how many queued datagrams go into one send call, and in
// which order. It belongs to the sending goroutine and is not safe for
// concurrent use.
type Batcher struct {
	max, size int
	fixed     bool
	fifo      bool
}

// NewBatcher returns a Batcher.
func NewBatcher(opts BatcherOptions) *Batcher {
	b := &Batcher{max: opts.Size, fixed: opts.Fixed, fifo: opts.FIFO}
	if b.max <= 0 {
		b.max = DefaultBatchSize
	}
	b.size = b.max
	return b
}

// Next pops the next batch from q into dst[:0] and returns it; it is empty
// if q is.
func (b *Batcher) Next(q *Queue, dst []Datagram) []Datagram {
	return q.Pop(dst[:0], b.size, b.fifo)
}

// Size returns the current batch size.
func (b *Batcher) Size() int { return b.size }

// Done feeds back how a batch of n datagrams went: sent of them were
// accepted by the socket, and pressure reports that the socket ran out of
// buffer space (ENOBUFS, EAGAIN or a write timeout).
func (b *Batcher) Done(n, sent int, pressure bool) {
	switch {
	case b.fixed:
	case pressure || sent < n:
		b.size = max(b.size/2, 1)
	case n == b.size:
		b.size = min(b.size+1, b.max)
	}
}

package shipper

import "sync"

// buffer is a pooled datagram payload.
type buffer struct {
	b    []byte
	pool *bufPool
}

// slack is the room a pooled buffer has past the payload limit: for a line
// appended before the packer finds it does not fit (see Packer.spill), and
// for the whole blocks counter copies, which may run past a line's end.
const slack = 512

// bufPool hands out buffers with room for one datagram and slack bytes
// more. It refuses to keep buffers that grew far past that, so one huge
// line cannot pin memory.
type bufPool struct {
	size int
	p    sync.Pool
}

func newBufPool(limit int) *bufPool {
	bp := &bufPool{size: limit + slack}
	bp.p.New = func() any { return &buffer{b: make([]byte, 0, bp.size), pool: bp} }
	return bp
}

func (bp *bufPool) get() *buffer {
	b := bp.p.Get().(*buffer)
	b.b = b.b[:0]
	return b
}

func (bp *bufPool) put(b *buffer) {
	if cap(b.b) <= 4*bp.size {
		bp.p.Put(b)
	}
}

// Datagram is one payload of whole lines, ready to send. It owns a pooled
// buffer: whoever holds it last calls [Datagram.Release].
type Datagram struct {
	buf *buffer
	// Lines is the number of lines in the payload.
	Lines int
	// Priority is the priority of every line in it.
	Priority Priority
	// Gen is the flush the datagram was packed in, counting from 1.
	Gen uint64
	// Last marks the last datagram packed in its flush.
	Last bool
	seq  uint64 // order of arrival in a Queue
}

// Bytes returns the payload; it is valid until [Datagram.Release].
func (d Datagram) Bytes() []byte { return d.buf.b }

// Len returns the payload size in bytes.
func (d Datagram) Len() int { return len(d.buf.b) }

// Release returns the payload to its pool; the datagram must not be used
// afterwards.
func (d Datagram) Release() {
	if d.buf != nil && d.buf.pool != nil {
		d.buf.pool.put(d.buf)
	}
}

// Sink receives the datagrams a [Packer] fills. Ship takes ownership of d.
// A Sink is called from the goroutine that drives the Packer.
type Sink interface {
	Ship(d Datagram)
}

package ringbuf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Bits and sizes of a sample header, struct bpf_ringbuf_hdr in the kernel:
// a length whose top two bits say the sample is still being written (busy)
// or was discarded, and 4 bytes the consumer does not use.
const (
	sampleBusy    = 1 << 31
	sampleDiscard = 1 << 30
	sampleHdrSize = 8
)

// kernelRing is the consumer's view of a BPF ring buffer's memory: the
// consumer position (read-write), the producer position and the data pages
// (read-only). The kernel maps the data pages twice in a row, so a sample
// that wraps past the end is contiguous.
//
// It reads samples the way cilium's ringbuf.Reader does, but stores the
// consumer position once per batch ([kernelRing.begin] to
// [kernelRing.release]) instead of once per sample, and takes no lock: only
// the drain goroutine may call its methods, but for fill.
type kernelRing struct {
	cons *uintptr // consumer position, in the consumer page
	prod *uintptr // producer position, in the producer page
	data []byte   // the data pages, twice
	mask uintptr

	mapped [][]byte // mmap'ed regions, for unmap
}

// mapKernelRing maps the ring buffer m. Its size must be a power of two, as
// the kernel ensures for a ring buffer map.
func mapKernelRing(m *ebpf.Map) (*kernelRing, error) {
	page := os.Getpagesize()
	size := int(m.MaxEntries())
	if size <= 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("map ring buffer: size %d is not a power of two", size)
	}
	cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap consumer page: %w", err)
	}
	prod, err := unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Munmap(cons)
		return nil, fmt.Errorf("mmap data pages: %w", err)
	}
	return &kernelRing{
		cons:   (*uintptr)(unsafe.Pointer(&cons[0])),
		prod:   (*uintptr)(unsafe.Pointer(&prod[0])),
		data:   prod[page:],
		mask:   uintptr(size - 1),
		mapped: [][]byte{cons, prod},
	}, nil
}

// unmap releases the mappings. No method may be called afterwards.
func (k *kernelRing) unmap() error {
	var errs []error
	for _, b := range k.mapped {
		errs = append(errs, unix.Munmap(b))
	}
	k.mapped = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unmap ring buffer: %w", err)
	}
	return nil
}

// begin starts a batch of reads at the stored consumer position, up to the
// producer position.
func (k *kernelRing) begin() cursor {
	c := cursor{data: k.data, mask: k.mask, pos: atomic.LoadUintptr(k.cons)}
	c.end = atomic.LoadUintptr(k.prod)
	if c.end-c.pos > k.mask+1 {
		c.err = fmt.Errorf("read ring buffer: %d bytes between consumer and producer: %w", c.end-c.pos, io.ErrUnexpectedEOF)
		c.end = c.pos
	}
	return c
}

// release stores the consumer position of c, handing the space of the
// samples read since begin back to the kernel.
func (k *kernelRing) release(c *cursor) {
	atomic.StoreUintptr(k.cons, c.pos)
}

// cursor is a batch of reads from a kernelRing. It is a value the drain
// goroutine keeps in registers while it reads, not in the kernelRing.
type cursor struct {
	data     []byte
	mask     uintptr
	pos, end uintptr // the next sample to read, and the producer position
	err      error   // why the batch stopped early, if it did
}

// next returns the next sample of the batch and true. It returns false at
// the producer position loaded by begin and at a sample that is busy,
// discarded or malformed; then [cursor.skip] says which. The sample
// aliases the ring: it is only valid until [kernelRing.release]. next is
// small enough to be inlined.
func (c *cursor) next() ([]byte, bool) {
	if c.pos == c.end {
		return nil, false
	}
	start := c.pos & c.mask
	// Load the length atomically: the kernel clears the busy bit with an
	// xchg after writing the sample, so this orders the reads below.
	hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&c.data[start])))
	size := sampleHdrSize + (uintptr(hdr)+7)&^7
	if hdr&(sampleBusy|sampleDiscard) != 0 || c.end-c.pos < size {
		return nil, false
	}
	c.pos += size
	start += sampleHdrSize
	return c.data[start : start+uintptr(hdr)], true
}

// skip is called when next returns false. It skips a discarded sample and
// returns true, or returns false at the end of the batch: at the producer
// position, at a busy sample, or at a malformed one, which sets err. It
// also returns true, skipping nothing, for a sample that was busy when
// next looked and has been committed since.
func (c *cursor) skip() bool {
	left := c.end - c.pos
	if left == 0 {
		return false
	}
	if left < sampleHdrSize {
		c.err = fmt.Errorf("read sample header: %d bytes left: %w", left, io.ErrUnexpectedEOF)
		return false
	}
	hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&c.data[c.pos&c.mask])))
	if hdr&sampleBusy != 0 {
		return false
	}
	n := uintptr(hdr &^ sampleDiscard)
	size := sampleHdrSize + (n+7)&^7
	if left < size {
		c.err = fmt.Errorf("read sample of %d bytes: %w", n, io.ErrUnexpectedEOF)
		return false
	}
	if hdr&sampleDiscard != 0 {
		c.pos += size
	}
	return true
}

// fill returns the share of the ring holding unread samples. Any goroutine
// may call it.
func (k *kernelRing) fill() float64 {
	cons := atomic.LoadUintptr(k.cons) // first: cons <= prod at all times
	used := atomic.LoadUintptr(k.prod) - cons
	return float64(used) / float64(k.mask+1)
}

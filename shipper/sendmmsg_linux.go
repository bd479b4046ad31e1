package shipper

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchWriter sends several datagrams with one sendmmsg call on a
// connected socket. It belongs to the sending goroutine.
type batchWriter struct {
	rc   syscall.RawConn
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
}

func newBatchWriter(c syscall.Conn) (*batchWriter, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("get raw socket: %w", err)
	}
	return &batchWriter{rc: rc}, nil
}

// writeBatch sends a prefix of bufs and returns its length; err is why the
// next datagram was not sent. A full socket buffer waits for room, up to
// the connection's write deadline.
func (w *batchWriter) writeBatch(bufs [][]byte) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if cap(w.hdrs) < len(bufs) {
		w.hdrs = make([]unix.Mmsghdr, len(bufs))
		w.iovs = make([]unix.Iovec, len(bufs))
	}
	hdrs, iovs := w.hdrs[:len(bufs)], w.iovs[:len(bufs)]
	for i, b := range bufs {
		iovs[i] = unix.Iovec{}
		if len(b) > 0 {
			iovs[i].Base = &b[0]
		}
		iovs[i].SetLen(len(b))
		hdrs[i] = unix.Mmsghdr{}
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
	}
	var n int
	var errno syscall.Errno
	err := w.rc.Write(func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), 0, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false // wait for room, or try again
		}
		n, errno = int(r), e
		return true
	})
	clear(iovs) // drop references to the payloads
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, errno
	}
	return n, nil
}

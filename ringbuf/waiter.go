package ringbuf

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// waiter puts the drain goroutine to sleep until the kernel wakes the
// reader of a ring buffer, another goroutine calls [waiter.wake], or a
// timeout passes.
//
// It is edge-triggered: a wait returns for a wakeup the kernel sent since
// the last wait, not because the ring holds data. A level-triggered wait
// (cilium's ringbuf.Reader) returns at once while the ring holds any data,
// so once a forced wakeup has roused a reader it chases the producer record
// by record, a system call for every few records, instead of sleeping
// until the next forced wakeup or the timer.
type waiter struct {
	epfd   int // epoll: the ring, edge-triggered, and event
	event  int // eventfd that wake writes to
	events [2]unix.EpollEvent
	buf    [8]byte // for reading event

	mu     sync.RWMutex // wake against close
	closed bool
}

func newWaiter(ringFD int) (_ *waiter, err error) {
	w := &waiter{epfd: -1, event: -1}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("create waiter: %w", err), w.close())
		}
	}()
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if w.event, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	ring := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(ringFD)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, ringFD, &ring); err != nil {
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	event := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(w.event)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.event, &event); err != nil {
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return w, nil
}

// wait sleeps until the kernel wakes the reader, wake is called, or
// timeout passes, counted in whole milliseconds rounded up. Only the drain
// goroutine may call it.
func (w *waiter) wait(timeout time.Duration) error {
	ms := int((max(timeout, 0) + time.Millisecond - 1) / time.Millisecond)
	for {
		n, err := unix.EpollWait(w.epfd, w.events[:], ms)
		if err == unix.EINTR {
			continue // a signal: wait again, at most the same time
		}
		if err != nil {
			return os.NewSyscallError("epoll_wait", err)
		}
		for _, ev := range w.events[:n] {
			if int(ev.Fd) == w.event {
				_, _ = unix.Read(w.event, w.buf[:]) // reset it
			}
		}
		return nil
	}
}

// wake makes a wait in progress, or else the next one, return at once. Any
// goroutine may call it, even after close, which makes it do nothing.
func (w *waiter) wake() error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return nil
	}
	b := [8]byte{1} // the eventfd adds 1 (or 1<<56, big-endian: as good)
	if _, err := unix.Write(w.event, b[:]); err != nil && err != unix.EAGAIN {
		return os.NewSyscallError("write eventfd", err)
	}
	return nil
}

// close releases the file descriptors. No wait may be in progress.
func (w *waiter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	var errs []error
	for _, fd := range []int{w.epfd, w.event} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	w.epfd, w.event = -1, -1
	return errors.Join(errs...)
}

package shipper

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

// transport writes datagrams to a receiver. Its methods belong to the
// sending goroutine.
type transport interface {
	// writeBatch sends a prefix of bufs, one datagram each, and returns its
	// length; err is why the next one was not sent.
	writeBatch(bufs [][]byte) (int, error)
	// setDeadline bounds the next writes.
	setDeadline(t time.Time)
	// probe checks whether the receiver is back, and reports whether it
	// had to reconnect. Datagrams found returned meanwhile go to bounce,
	// as with bounced.
	probe(ctx context.Context, wait time.Duration, bounce func(quote []byte)) (reconnected bool, err error)
	// staleRefused reports whether ECONNREFUSED from a write is about an
	// earlier datagram (connected UDP, where ICMP errors arrive late), so
	// that the datagram itself can be retried once.
	staleRefused() bool
	// bounced waits for wait and returns the error, if any, that the
	// network reported since the last call for the datagrams sent (UDP's
	// ICMP). It calls bounce with what it knows of each datagram returned
	// undelivered: the prefix of its payload that the error quotes.
	bounced(wait time.Duration, bounce func(quote []byte)) error
	// returns reports whether bounced can name returned datagrams, so
	// that the sender remembers what it sent.
	returns() bool
	// maxPayload is the default payload limit.
	maxPayload() int
	close() error
}

// writerTransport writes each datagram with one Write call.
type writerTransport struct{ w io.Writer }

func (t writerTransport) writeBatch(bufs [][]byte) (int, error) {
	for i, b := range bufs {
		if _, err := t.w.Write(b); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

func (writerTransport) setDeadline(time.Time) {}
func (writerTransport) probe(context.Context, time.Duration, func([]byte)) (bool, error) {
	return false, nil
}
func (writerTransport) staleRefused() bool                        { return false }
func (writerTransport) bounced(time.Duration, func([]byte)) error { return nil }
func (writerTransport) returns() bool                             { return false }
func (writerTransport) maxPayload() int                           { return UDPPayload }

func (t writerTransport) close() error {
	if c, ok := t.w.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// isPressure reports whether err means the socket ran out of buffer space.
func isPressure(err error) bool {
	return errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

var (
	_ transport = writerTransport{}
	_ transport = (*udpTransport)(nil)
	_ transport = (*unixTransport)(nil)
	_ Sink      = (*Queue)(nil)
)

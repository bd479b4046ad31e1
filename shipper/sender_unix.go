package shipper

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// unixTransport sends to a Unix datagram socket by path. When the receiver
// goes away (ECONNREFUSED, ENOENT, ENOTCONN) it drops the connection, and
// a probe dials the path again, so a socket file that is removed and
// created anew is found.
type unixTransport struct {
	path string
	conn *net.UnixConn
	w    *batchWriter
}

// dialUnixgram connects to the socket at path. If there is no receiver
// yet (ENOENT, ECONNREFUSED), it returns the transport unconnected with
// that error as missing, for probes to connect later.
func dialUnixgram(path string) (t *unixTransport, missing, err error) {
	t = &unixTransport{path: path}
	if err := t.dial(); err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return t, err, nil
		}
		return nil, nil, err
	}
	return t, nil, nil
}

func (t *unixTransport) dial() error {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: t.path, Net: "unixgram"})
	if err != nil {
		return err // *net.OpError names the operation and the path
	}
	w, err := newBatchWriter(c)
	if err != nil {
		c.Close()
		return err
	}
	t.conn, t.w = c, w
	return nil
}

func (t *unixTransport) writeBatch(bufs [][]byte) (int, error) {
	if t.conn == nil {
		return 0, fmt.Errorf("write unixgram %s: %w", t.path, syscall.ENOTCONN)
	}
	n, err := t.w.writeBatch(bufs)
	if err == nil {
		return n, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTCONN) {
		t.close()
	}
	return n, fmt.Errorf("send to unixgram %s: %w", t.path, err)
}

func (t *unixTransport) setDeadline(d time.Time) {
	if t.conn != nil {
		t.conn.SetWriteDeadline(d)
	}
}

// probe dials the path again.
func (t *unixTransport) probe(context.Context, time.Duration, func([]byte)) (bool, error) {
	t.close()
	if err := t.dial(); err != nil {
		return false, err
	}
	return true, nil
}

func (*unixTransport) staleRefused() bool                        { return false }
func (*unixTransport) bounced(time.Duration, func([]byte)) error { return nil }
func (*unixTransport) returns() bool                             { return false }
func (*unixTransport) maxPayload() int                           { return UnixgramPayload }

func (t *unixTransport) close() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close unixgram %s: %w", t.path, err)
	}
	return nil
}

//go:build !linux

package shipper

import (
	"fmt"
	"net"
	"syscall"
)

// batchWriter writes one datagram per Write call where sendmmsg is missing.
type batchWriter struct{ c net.Conn }

func newBatchWriter(c syscall.Conn) (*batchWriter, error) {
	nc, ok := c.(net.Conn)
	if !ok {
		return nil, fmt.Errorf("get socket: %T is not a net.Conn", c)
	}
	return &batchWriter{c: nc}, nil
}

func (w *batchWriter) writeBatch(bufs [][]byte) (int, error) {
	for i, b := range bufs {
		if _, err := w.c.Write(b); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

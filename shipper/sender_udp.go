package shipper

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// udpTransport sends to a connected UDP socket, IPv4 or IPv6. A receiver
// that is gone shows as ECONNREFUSED from a later write, or as the
// socket's pending error after a probe.
type udpTransport struct {
	network, addr string
	conn          *net.UDPConn
	w             *batchWriter
}

func dialUDP(network, addr string) (*udpTransport, error) {
	t := &udpTransport{network: network, addr: addr}
	if err := t.dial(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *udpTransport) dial() error {
	c, err := net.Dial(t.network, t.addr)
	if err != nil {
		return err // *net.OpError names the operation and the address
	}
	w, err := newBatchWriter(c.(*net.UDPConn))
	if err != nil {
		c.Close()
		return err
	}
	t.conn, t.w = c.(*net.UDPConn), w
	return nil
}

func (t *udpTransport) writeBatch(bufs [][]byte) (int, error) {
	if t.conn == nil {
		return 0, net.ErrClosed
	}
	return t.w.writeBatch(bufs)
}

func (t *udpTransport) setDeadline(d time.Time) {
	if t.conn != nil {
		t.conn.SetWriteDeadline(d)
	}
}

// probe sends an empty datagram, which receivers ignore, waits, and checks
// for an ICMP error.
func (t *udpTransport) probe(ctx context.Context, wait time.Duration) (reconnected bool, err error) {
	if t.conn == nil {
		if err := t.dial(); err != nil {
			return false, err
		}
		reconnected = true
	}
	socketError(t.conn) // clear what an earlier send left
	t.conn.SetWriteDeadline(time.Now().Add(wait + time.Second))
	if _, err := t.w.writeBatch([][]byte{nil}); err != nil {
		return reconnected, fmt.Errorf("probe %s: %w", t.addr, err)
	}
	if err := sleep(ctx, wait); err != nil {
		return reconnected, err
	}
	if err := socketError(t.conn); err != nil {
		return reconnected, fmt.Errorf("probe %s: %w", t.addr, err)
	}
	return reconnected, nil
}

func (*udpTransport) staleRefused() bool { return true }

func (t *udpTransport) bounced(wait time.Duration) error {
	if t.conn == nil {
		return nil
	}
	time.Sleep(wait)
	return socketError(t.conn)
}

func (t *udpTransport) maxPayload() int {
	if a, ok := t.conn.RemoteAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		return UDPPayloadIPv6
	}
	return UDPPayload
}

func (t *udpTransport) close() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close %s: %w", t.addr, err)
	}
	return nil
}

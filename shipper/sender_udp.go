package shipper

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// udpTransport sends to a connected UDP socket, IPv4 or IPv6. On Linux the
// socket has IP_RECVERR set: each ICMP error about a datagram, such as the
// port unreachable of a receiver that is gone, is queued on the socket
// quoting the datagram, so that every datagram the network returns is
// known and counted, not only the one whose error a later write reports
// (ECONNREFUSED); and a datagram a local qdisc drops fails its send with
// ENOBUFS instead of vanishing.
type udpTransport struct {
	network, addr string
	conn          *net.UDPConn
	w             *batchWriter
	errs          *errQueue
}

func dialUDP(network, addr string) (*udpTransport, error) {
	t := &udpTransport{network: network, addr: addr}
	if err := t.dial(); err != nil {
		return nil, err
	}
	return t, nil
}

// newUDPTransport returns a transport sending on c, a connected UDP socket,
// and redialling network and addr when it has to.
func newUDPTransport(network, addr string, c *net.UDPConn) (*udpTransport, error) {
	t := &udpTransport{network: network, addr: addr}
	if err := t.use(c); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *udpTransport) dial() error {
	c, err := net.Dial(t.network, t.addr)
	if err != nil {
		return err // *net.OpError names the operation and the address
	}
	if err := t.use(c.(*net.UDPConn)); err != nil {
		c.Close()
		return err
	}
	return nil
}

// use sets up c for sending.
func (t *udpTransport) use(c *net.UDPConn) error {
	if err := setRecvErr(c); err != nil {
		return fmt.Errorf("dial %s: %w", t.addr, err)
	}
	w, err := newBatchWriter(c)
	if err != nil {
		return err
	}
	q, err := newErrQueue(c)
	if err != nil {
		return err
	}
	t.conn, t.w, t.errs = c, w, q
	return nil
}

func (t *udpTransport) writeBatch(bufs [][]byte) (int, error) {
	if t.conn == nil {
		return 0, net.ErrClosed
	}
	n, err := t.w.writeBatch(bufs)
	if err != nil {
		err = fmt.Errorf("send to %s: %w", t.addr, err)
	}
	return n, err
}

func (t *udpTransport) setDeadline(d time.Time) {
	if t.conn != nil {
		t.conn.SetWriteDeadline(d)
	}
}

// probe sends an empty datagram, which receivers ignore, waits, and checks
// for an ICMP error.
func (t *udpTransport) probe(ctx context.Context, wait time.Duration, bounce func([]byte)) (reconnected bool, err error) {
	if t.conn == nil {
		if err := t.dial(); err != nil {
			return false, err
		}
		reconnected = true
	}
	t.errs.read(bounce) // what earlier sends left is no news of the receiver
	t.conn.SetWriteDeadline(time.Now().Add(wait + time.Second))
	if _, err := t.w.writeBatch([][]byte{nil}); err != nil {
		return reconnected, fmt.Errorf("probe %s: %w", t.addr, err)
	}
	if err := sleep(ctx, wait); err != nil {
		return reconnected, err
	}
	if err := t.errs.read(bounce); err != nil {
		return reconnected, fmt.Errorf("probe %s: %w", t.addr, err)
	}
	return reconnected, nil
}

func (*udpTransport) staleRefused() bool { return true }

func (t *udpTransport) bounced(wait time.Duration, bounce func([]byte)) error {
	if t.conn == nil {
		return nil
	}
	if wait > 0 {
		time.Sleep(wait)
	}
	if err := t.errs.read(bounce); err != nil {
		return fmt.Errorf("send to %s: %w", t.addr, err)
	}
	return nil
}

func (*udpTransport) returns() bool { return recvErr }

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

package shipper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// setRecvErr asks the kernel to queue each ICMP error about a datagram of
// c on the socket's error queue (IP_RECVERR, IPV6_RECVERR), quoting the
// datagram, and to return local drops, such as a full qdisc's, from the
// send as ENOBUFS instead of hiding them.
func setRecvErr(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("get raw socket: %w", err)
	}
	level, opt := unix.IPPROTO_IP, unix.IP_RECVERR
	if a, ok := c.RemoteAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVERR
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, 1) }); err != nil {
		return fmt.Errorf("set IP_RECVERR: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set IP_RECVERR: %w", serr)
	}
	return nil
}

// errQueue reads a socket's error queue. It belongs to the sending
// goroutine.
type errQueue struct {
	rc      syscall.RawConn
	payload []byte // the quoted datagram
	oob     []byte // the sock_extended_err and the offender's address
}

func newErrQueue(c syscall.Conn) (*errQueue, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("get raw socket: %w", err)
	}
	// ICMP quotes at most 576 bytes of an IPv4 datagram, ICMPv6 1280 of an
	// IPv6 one.
	return &errQueue{rc: rc, payload: make([]byte, 2048), oob: make([]byte, 512)}, nil
}

// read reads the error queue without waiting. It calls bounce with the
// payload that each ICMP error quotes (a prefix of the datagram, empty for
// a probe): the network returned that datagram undelivered. It returns the
// error the first one carried, such as ECONNREFUSED, or, if the queue was
// empty, the socket's pending error (SO_ERROR), which it clears.
func (q *errQueue) read(bounce func(quote []byte)) error {
	var first error
	for {
		var n, oobn int
		var rerr error
		err := q.rc.Control(func(fd uintptr) {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), q.payload, q.oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		})
		if err == nil {
			err = rerr
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			if first == nil {
				first = pendingError(q.rc)
			}
			return first
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("read socket error queue: %w", err)
		}
		errno, icmp := extendedErr(q.oob[:oobn])
		if !icmp {
			// A local error, such as EMSGSIZE, which the send returned as
			// well: nothing was sent.
			continue
		}
		if first == nil {
			first = errno
		}
		bounce(q.payload[:n])
	}
}

// extendedErr finds the sock_extended_err in the control messages of an
// error queue read, and reports its error and whether an ICMP message
// carried it.
func extendedErr(oob []byte) (syscall.Errno, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		ip := m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR
		ip6 := m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		if (!ip && !ip6) || len(m.Data) < sizeofSockExtendedErr {
			continue
		}
		// struct sock_extended_err: ee_errno, then ee_origin.
		origin := m.Data[4]
		icmp := origin == unix.SO_EE_ORIGIN_ICMP || origin == unix.SO_EE_ORIGIN_ICMP6
		return syscall.Errno(binary.NativeEndian.Uint32(m.Data)), icmp
	}
	return 0, false
}

// pendingError returns and clears the socket's pending error.
func pendingError(rc syscall.RawConn) error {
	var soErr int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		soErr, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	}); err != nil {
		return err
	}
	if gerr != nil {
		return gerr
	}
	if soErr != 0 {
		return syscall.Errno(soErr)
	}
	return nil
}

// sizeofSockExtendedErr is the size of struct sock_extended_err.
const sizeofSockExtendedErr = 16

// recvErr reports that returned datagrams are read from the error queue.
const recvErr = true

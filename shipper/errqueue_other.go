//go:build !linux

package shipper

import (
	"net"
	"syscall"
)

// setRecvErr does nothing where there is no IP_RECVERR.
func setRecvErr(*net.UDPConn) error { return nil }

// errQueue has nothing to read where there is no socket error queue.
type errQueue struct{}

func newErrQueue(syscall.Conn) (*errQueue, error) { return &errQueue{}, nil }

// read returns nil: no datagram is ever known to have bounced.
func (*errQueue) read(func([]byte)) error { return nil }

// recvErr reports that returned datagrams are read from the error queue.
const recvErr = false

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// TCP is the tcp collector's kernel side: BTF-typed tracepoints that write
// a [TCPRecord] per retransmit (tcp_retransmit_skb, and
// tcp_retransmit_synack for SYN-ACKs, both as [ProgTCPRetransmit]), per
// reset sent (tcp_send_reset, [ProgTCPSendReset]) and received
// (tcp_receive_reset, [ProgTCPReceiveReset]), and per active open, passive
// open and failed connect (inet_sock_set_state, [ProgTCPState]).
//
// Opens and failed connects are socket state transitions:
//
//   - active open: SYN_SENT to ESTABLISHED, a connect() that succeeded;
//   - passive open: SYN_RECV to ESTABLISHED, the new socket of a listener
//     completing its handshake (what accept() returns);
//   - failed connect: SYN_SENT to CLOSE, a connect() refused, timed out or
//     abandoned.
//
// So, per network namespace, active opens plus failed connects equal the
// kernel's TcpActiveOpens (counted when the SYN is sent), and passive opens
// its TcpPassiveOpens. Retransmit records with [TCPRecord.Code] 0 carry the
// segments resent, which add up to TcpRetransSegs; the kernel also counts
// there a retransmit that failed in the send itself (a local netfilter
// OUTPUT drop, -EPERM; no buffer, -ENOBUFS), but not one given up before
// it (-EBUSY, -EAGAIN), which records show with their code.
//
// The metrics made from the records, each a counter scaled by the record's
// sampling rate:
//
//	host.tcp.retransmit      segments resent (Segs of records with Code 0)
//	host.tcp.reset           tag dir:sent or dir:received
//	host.tcp.open            tag dir:active or dir:passive; comm for active
//	host.tcp.connect_failed  tag comm
//
// where comm is the name of the task that called connect(), sanitised.
type TCP struct {
	objs tcpObjects
	tracing
}

var (
	_ Collector   = (*TCP)(nil)
	_ SampleRater = (*TCP)(nil)
)

// LoadTCP loads the tcp collector's programs, writing to s's maps. It
// reads the kernel's BTF to see which tracepoint arguments this kernel
// passes.
func LoadTCP(s *Shared) (*TCP, error) {
	spec, err := loadTcp()
	if err != nil {
		return nil, err
	}
	kernel, err := kernelBTF(s)
	if err != nil {
		return nil, fmt.Errorf("load tcp collector: %w", err)
	}
	// Older kernels pass fewer arguments: the programs then leave the
	// code out (and tcp_retransmit_skb fired only for retransmits sent).
	for v, tp := range map[string]string{"retransmit_has_err": "tcp_retransmit_skb", "reset_has_reason": "tcp_send_reset"} {
		n, err := tracepointArgs(kernel, tp)
		if err != nil {
			return nil, fmt.Errorf("load tcp collector: %w", err)
		}
		if err := spec.Variables[v].Set(n >= 3); err != nil {
			return nil, fmt.Errorf("load tcp collector: set %s: %w", v, err)
		}
	}
	t := new(TCP)
	if err := s.load("tcp", spec, &t.objs); err != nil {
		return nil, err
	}
	return t, nil
}

// Name returns "tcp".
func (t *TCP) Name() string { return "tcp" }

// Attach starts the programs.
func (t *TCP) Attach() error {
	o := &t.objs
	return t.attach(t.Name(), o.HandleRetransmit, o.HandleRetransmitSynack, o.HandleSendReset,
		o.HandleReceiveReset, o.HandleState)
}

// Detach stops the programs.
func (t *TCP) Detach() error { return t.detach(t.Name()) }

// SetSampleRate makes each CPU record one event in n, per program.
func (t *TCP) SetSampleRate(n uint32) error {
	return setSampleRate(t.Name(), t.objs.SampleRate, n)
}

// Close detaches the programs and releases them.
func (t *TCP) Close() error {
	return errors.Join(t.Detach(), t.objs.Close())
}

// TCPEvent says what a [TCPRecord] reports. The values mirror enum
// tcp_event in include/record_tcp.h.
type TCPEvent uint8

// TCP events.
const (
	TCPRetransmit    TCPEvent = 1 // a segment, or a TSO skb of Segs segments, sent again
	TCPSendReset     TCPEvent = 2 // an RST sent
	TCPReceiveReset  TCPEvent = 3 // an RST accepted by a socket
	TCPActiveOpen    TCPEvent = 4 // SYN_SENT to ESTABLISHED
	TCPPassiveOpen   TCPEvent = 5 // SYN_RECV to ESTABLISHED
	TCPFailedConnect TCPEvent = 6 // SYN_SENT to CLOSE
)

var tcpEventNames = [...]string{
	TCPRetransmit:    "retransmit",
	TCPSendReset:     "send_reset",
	TCPReceiveReset:  "receive_reset",
	TCPActiveOpen:    "active_open",
	TCPPassiveOpen:   "passive_open",
	TCPFailedConnect: "failed_connect",
}

// String returns the event's name, such as "active_open".
func (e TCPEvent) String() string {
	if int(e) < len(tcpEventNames) && tcpEventNames[e] != "" {
		return tcpEventNames[e]
	}
	return fmt.Sprintf("tcp_event_%d", uint8(e))
}

// TCPState is a TCP socket state, as in include/net/tcp_states.h.
type TCPState uint8

// TCP states.
const (
	TCPEstablished TCPState = 1 + iota
	TCPSynSent
	TCPSynRecv
	TCPFinWait1
	TCPFinWait2
	TCPTimeWait
	TCPClose
	TCPCloseWait
	TCPLastAck
	TCPListen
	TCPClosing
	TCPNewSynRecv
	TCPBoundInactive
)

var tcpStateNames = [...]string{
	"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
	"CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV", "BOUND_INACTIVE",
}

// String returns the state's kernel name, such as "SYN_SENT".
func (s TCPState) String() string {
	if s != 0 && int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return fmt.Sprintf("TCP_STATE_%d", uint8(s))
}

// TCPRecord is one TCP event, seen from the local socket: Local is this
// host's end, Remote the peer's. For a reset sent in answer to a packet no
// socket wanted, the addresses are the packet's, Local its destination.
type TCPRecord struct {
	Header
	Event  TCPEvent
	Family uint8 // unix.AF_INET or unix.AF_INET6; 0 if the kernel gave neither
	// OldState is the state left, for opens and failed connects.
	OldState TCPState
	// State is the socket's state: the state entered for opens and failed
	// connects, the current one otherwise; 0 for a reset sent without a
	// socket.
	State  TCPState
	Local  netip.AddrPort
	Remote netip.AddrPort
	// NetNS is the inode number of the socket's network namespace (or,
	// for a reset sent without a socket, of the device the packet came
	// in on): the inode of /proc/PID/ns/net.
	NetNS uint32
	// Code is, for a retransmit, 0 if the segments were sent and a
	// negative errno if not (-EBUSY: the original is still queued on the
	// host; older kernels record successes only); for a reset sent, the
	// kernel's reason (enum sk_rst_reason, 0 if not given). 0 otherwise.
	Code int32
	// Segs is the number of segments a retransmit resent (a TSO skb
	// carries several), and 1 for every other event.
	Segs uint32
	// Comm is the name of the task that called connect() on the socket,
	// NUL-padded, or all zero if the collector did not see the connect
	// (passive sockets, sockets older than the collector). Treat it as
	// hostile text.
	Comm [CommLen]byte
}

// Name returns the connecting task's name up to its first NUL; empty if
// unknown. The slice aliases r.
func (r *TCPRecord) Name() []byte { return cstring(r.Comm[:]) }

// TCP decodes a record of kind [KindTCP] into t.
func (r *Record) TCP(t *TCPRecord) error {
	if r.size != TCPRecordSize || r.Kind != KindTCP {
		return fmt.Errorf("decode tcp record of kind %d: %w", r.Kind, ErrRecord)
	}
	b := r.raw[HeaderSize:TCPRecordSize]
	le := binary.LittleEndian
	t.Header = r.Header
	t.Event = TCPEvent(b[0])
	t.Family = b[1]
	t.OldState = TCPState(b[2])
	t.State = TCPState(b[3])
	t.Local = netip.AddrPortFrom(tcpAddr(t.Family, b[8:24]), le.Uint16(b[4:]))
	t.Remote = netip.AddrPortFrom(tcpAddr(t.Family, b[24:40]), le.Uint16(b[6:]))
	t.NetNS = le.Uint32(b[40:])
	t.Code = int32(le.Uint32(b[44:]))
	t.Segs = le.Uint32(b[48:])
	copy(t.Comm[:], b[56:])
	return nil
}

// tcpAddr reads an address in network byte order: IPv4 in the first 4
// bytes of b.
func tcpAddr(family uint8, b []byte) netip.Addr {
	switch family {
	case unix.AF_INET:
		return netip.AddrFrom4([4]byte(b[:4]))
	case unix.AF_INET6:
		return netip.AddrFrom16([16]byte(b[:16]))
	}
	return netip.Addr{}
}

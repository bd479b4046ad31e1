/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Ring-buffer records of the tcp and oom collectors. The Go mirrors are
 * TCPRecord in bpf/tcp.go and OOMRecord in bpf/oom.go.
 */
#ifndef BPFSTATD_RECORD_TCP_H
#define BPFSTATD_RECORD_TCP_H

#include "record.h"

/* What a tcp record reports. */
enum tcp_event {
	TCP_EVENT_RETRANSMIT = 1,	/* a segment sent again */
	TCP_EVENT_SEND_RESET = 2,	/* an RST sent */
	TCP_EVENT_RECEIVE_RESET = 3,	/* an RST accepted by a socket */
	TCP_EVENT_ACTIVE_OPEN = 4,	/* SYN_SENT -> ESTABLISHED */
	TCP_EVENT_PASSIVE_OPEN = 5,	/* SYN_RECV -> ESTABLISHED */
	TCP_EVENT_FAILED_CONNECT = 6,	/* SYN_SENT -> CLOSE */
};

/*
 * One TCP event, seen from the local socket: laddr/lport are this host's
 * end, raddr/rport the peer's. Addresses are in network byte order, IPv4
 * in the first 4 bytes; ports in host byte order.
 */
struct tcp_record {
	struct record_header hdr;
	__u8 event;	/* enum tcp_event */
	__u8 family;	/* AF_INET or AF_INET6 */
	__u8 old_state;	/* state transitions: the state left */
	__u8 state;	/* the socket's state (after a transition), 0 if none */
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	__u32 netns;	/* inode number of the network namespace */
	__s32 code;	/* retransmit: 0 or -errno; send reset: enum sk_rst_reason */
	__u32 segs;	/* retransmit: segments sent again; otherwise 1 */
	__u32 pad;
	char comm[TASK_COMM_LEN]; /* the process that called connect(), if seen */
};

/* A task chosen by the OOM killer. */
struct oom_record {
	struct record_header hdr;
	__u32 pid;
	__u32 tgid;
	__u32 uid;	/* the victim's real uid */
	__u32 pad;
	char comm[TASK_COMM_LEN];
};

#endif /* BPFSTATD_RECORD_TCP_H */

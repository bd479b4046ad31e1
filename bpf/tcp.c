//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tcp: a ring-buffer record per TCP retransmit, per reset sent or
 * received, and per connection opened or failed, from BTF-typed
 * tracepoints (no tracefs needed). Opens and failed connects come from
 * socket state transitions:
 *
 *   active open     SYN_SENT -> ESTABLISHED  (a connect() succeeded)
 *   passive open    SYN_RECV -> ESTABLISHED  (the socket accept() returns)
 *   failed connect  SYN_SENT -> CLOSE        (refused, timed out, aborted)
 *
 * Every record carries the socket's network namespace; records of a socket
 * whose connect() was seen also carry the name of the task that called it.
 *
 * The tracepoints' sockets and skbs are BTF-typed pointers: their fields
 * are read with plain loads (CO-RE relocated), not bpf_probe_read_kernel
 * calls, except where the verifier knows the pointer as another type than
 * the one read (inet_sock, tcp_skb_cb) and for packet bytes.
 */
#include "common.h"
#include "kernel_net_sock.h"
#include "record_tcp.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

/* Set by the loader from the kernel's BTF: whether tcp_retransmit_skb
 * passes its result (Linux 6.17 on; before, it fired on success only) and
 * tcp_send_reset its reason (Linux 6.10 on). */
volatile const bool retransmit_has_err = true;
volatile const bool reset_has_reason = true;

/* The task that called connect() on a socket, kept with the socket. */
struct tcp_owner {
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tcp_owner);
} tcp_owners SEC(".maps");

/* tcp_reserve reserves a record and zeroes everything after its header. */
static __always_inline struct tcp_record *tcp_reserve(__u32 prog, __u8 event)
{
	struct tcp_record *r = record_reserve(prog, RECORD_TCP, struct tcp_record);

	if (!r)
		return NULL;
	__builtin_memset((void *)r + sizeof(r->hdr), 0, sizeof(*r) - sizeof(r->hdr));
	r->event = event;
	r->segs = 1;
	return r;
}

/* fill_common copies the addresses, ports, namespace and state that full,
 * request and time-wait sockets share. */
static __always_inline void fill_common(struct tcp_record *r, const struct sock_common *c)
{
	r->family = c->skc_family;
	r->state = c->skc_state;
	r->lport = c->skc_num;
	r->rport = bpf_ntohs(c->skc_dport);
	r->netns = c->skc_net.net->ns.inum;
	if (r->family == AF_INET) {
		*(__be32 *)r->laddr = c->skc_rcv_saddr;
		*(__be32 *)r->raddr = c->skc_daddr;
	} else if (r->family == AF_INET6) {
		__builtin_memcpy(r->laddr, &c->skc_v6_rcv_saddr, 16);
		__builtin_memcpy(r->raddr, &c->skc_v6_daddr, 16);
	}
}

/* fill_sock copies what fill_common does and, for a full socket, the task
 * that called connect() on it, if this collector saw it. sk may also be a
 * request or time-wait socket (for tcp_send_reset). */
static __always_inline void fill_sock(struct tcp_record *r, const struct sock *sk)
{
	struct tcp_owner *o;

	fill_common(r, &sk->__sk_common);
	if (r->state == TCP_TIME_WAIT || r->state == TCP_NEW_SYN_RECV)
		return;
	/* Closing a socket releases its port (skc_num = 0) before an abort
	 * sends its RST; the socket keeps it here. */
	r->lport = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	o = bpf_sk_storage_get(&tcp_owners, (void *)sk, 0, 0);
	if (o)
		__builtin_memcpy(r->comm, o->comm, sizeof(r->comm));
}

/* fill_skb copies the addresses and ports of a received TCP packet, seen
 * from the receiver, and the namespace of the device it came in on. */
static __always_inline void fill_skb(struct tcp_record *r, const struct sk_buff *skb)
{
	unsigned char *head = skb->head;
	unsigned char *nh = head + skb->network_header;
	struct tcphdr th;
	__u8 version;

	if (bpf_probe_read_kernel(&version, 1, nh))
		return;
	if (version >> 4 == 4) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), nh))
			return;
		r->family = AF_INET;
		__builtin_memcpy(r->laddr, &ip.daddr, 4);
		__builtin_memcpy(r->raddr, &ip.saddr, 4);
	} else if (version >> 4 == 6) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), nh))
			return;
		r->family = AF_INET6;
		__builtin_memcpy(r->laddr, &ip6.daddr, 16);
		__builtin_memcpy(r->raddr, &ip6.saddr, 16);
	} else {
		return;
	}
	if (bpf_probe_read_kernel(&th, sizeof(th), head + skb->transport_header))
		return;
	r->lport = bpf_ntohs(th.dest);
	r->rport = bpf_ntohs(th.source);
	r->netns = skb->dev->nd_net.net->ns.inum;
}

/* Counts each retransmitted TCP skb, with the segments it carries (as
 * TcpRetransSegs does) and the result of sending it: the kernel counts
 * segments in TcpRetransSegs once a retransmit gets as far as sending. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_record *r = tcp_reserve(PROG_TCP_RETRANSMIT, TCP_EVENT_RETRANSMIT);
	const struct tcp_skb_cb *cb;

	if (!r)
		return 0;
	fill_sock(r, sk);
	cb = (const struct tcp_skb_cb *)skb->cb;
	r->segs = BPF_CORE_READ(cb, tcp_gso_segs);
	if (retransmit_has_err)
		r->code = (int)ctx[2];
	record_submit(PROG_TCP_RETRANSMIT, r);
	return 0;
}

/* Counts each SYN-ACK sent again for a connection not yet accepted: the
 * kernel counts these in TcpRetransSegs too, but they have no skb of a
 * socket, so they come through their own tracepoint. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(handle_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	struct tcp_record *r = tcp_reserve(PROG_TCP_RETRANSMIT, TCP_EVENT_RETRANSMIT);

	if (!r)
		return 0;
	fill_common(r, &req->__req_common);
	record_submit(PROG_TCP_RETRANSMIT, r);
	return 0;
}

/* Counts each RST sent: by a socket aborting (skb is NULL), or in answer
 * to a packet (sk may be NULL when no socket matched it, as for a connect
 * to a closed port). */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(handle_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_record *r = tcp_reserve(PROG_TCP_SEND_RESET, TCP_EVENT_SEND_RESET);

	if (!r)
		return 0;
	if (sk)
		fill_sock(r, sk);
	else if (skb)
		fill_skb(r, skb);
	if (reset_has_reason)
		r->code = (int)ctx[2];
	record_submit(PROG_TCP_SEND_RESET, r);
	return 0;
}

/* Counts each RST a socket accepted. */
SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(handle_receive_reset, struct sock *sk)
{
	struct tcp_record *r = tcp_reserve(PROG_TCP_RECEIVE_RESET, TCP_EVENT_RECEIVE_RESET);

	if (!r)
		return 0;
	fill_sock(r, sk);
	record_submit(PROG_TCP_RECEIVE_RESET, r);
	return 0;
}

/* Remembers who calls connect(), and counts active opens, passive opens
 * and failed connects; other transitions are not counted. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct tcp_record *r;
	struct tcp_owner *o;
	__u8 event;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_SYN_SENT) {
		/* In connect(), in the caller's context. */
		o = bpf_sk_storage_get(&tcp_owners, (void *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (o)
			bpf_get_current_comm(o->comm, sizeof(o->comm));
		return 0;
	}
	if (oldstate == TCP_SYN_SENT && newstate == TCP_ESTABLISHED)
		event = TCP_EVENT_ACTIVE_OPEN;
	else if (oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE)
		event = TCP_EVENT_FAILED_CONNECT;
	else if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED)
		event = TCP_EVENT_PASSIVE_OPEN;
	else
		return 0;
	r = tcp_reserve(PROG_TCP_STATE, event);
	if (!r)
		return 0;
	fill_sock(r, sk);
	r->old_state = oldstate;
	r->state = newstate;
	record_submit(PROG_TCP_STATE, r);
	return 0;
}

//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * net: packets and bytes per link and direction, counted by a TC program
 * per direction that the loader attaches to every link of the host's
 * network namespace (as a TCX program, or as a filter of a clsact qdisc).
 *
 * The loader creates a link's counters before it attaches the programs and
 * deletes them after it releases the link, so the programs only look up and
 * never insert: a packet with no counters (a link being released) is seen
 * in the drop ledger but not counted.
 */
#include "common.h"
#include "kernel_net.h"

enum net_direction {
	NET_INGRESS = 0,
	NET_EGRESS = 1,
};

struct net_key {
	__u32 ifindex;
	__u32 dir; /* enum net_direction */
};

struct net_counters {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192); /* set by the loader: two per link */
	__type(key, struct net_key);
	__type(value, struct net_counters);
} net_counters SEC(".maps");

/*
 * count adds one packet of skb->len bytes to the link's counters for dir.
 * At both hooks skb->len covers the frame from its MAC header (TC pushes
 * the header back before running ingress programs), without the FCS:
 * what drivers such as veth count in their own link statistics.
 */
static __always_inline int count(struct __sk_buff *skb, __u32 dir, __u32 prog)
{
	struct net_key key = { .ifindex = skb->ifindex, .dir = dir };
	struct net_counters *c;

	ledger_add(prog, LEDGER_SEEN);
	c = bpf_map_lookup_elem(&net_counters, &key);
	if (!c)
		return TC_ACT_UNSPEC;
	c->packets += 1; /* per-CPU value: no other writer */
	c->bytes += skb->len;
	ledger_add(prog, LEDGER_EMITTED);
	return TC_ACT_UNSPEC;
}

/* Counts every packet a link receives; returns TCX_NEXT (TC_ACT_UNSPEC). */
SEC("tc")
int net_ingress(struct __sk_buff *skb)
{
	return count(skb, NET_INGRESS, PROG_NET_INGRESS);
}

/* Counts every packet a link transmits; returns TCX_NEXT (TC_ACT_UNSPEC). */
SEC("tc")
int net_egress(struct __sk_buff *skb)
{
	return count(skb, NET_EGRESS, PROG_NET_EGRESS);
}

//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * skb: packets the kernel dropped, counted per CPU by drop reason, from the
 * BTF-typed kfree_skb tracepoint (no tracefs needed). Packets consumed
 * normally go to consume_skb and are not seen here. The drop rate can be
 * high, so each drop costs one per-CPU array increment and nothing else;
 * user space names the reasons from the kernel's BTF.
 */
#include "common.h"
#include <bpf/bpf_tracing.h>

/* Reasons below SKB_DROP_SLOTS have their own slot (Linux 6.18 defines
 * about 130); slot SKB_DROP_SLOTS counts the rest, such as the reasons of
 * subsystems, which start at 1 << 16. */
#define SKB_DROP_SLOTS 256

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SKB_DROP_SLOTS + 1);
	__type(key, __u32);
	__type(value, __u64);
} skb_drops SEC(".maps");

struct sk_buff;
struct sock;

/* Counts each dropped packet under its reason (enum skb_drop_reason). */
SEC("tp_btf/kfree_skb")
int BPF_PROG(handle_kfree_skb, struct sk_buff *skb, void *location, __u32 reason)
{
	__u32 key = reason < SKB_DROP_SLOTS ? reason : SKB_DROP_SLOTS;
	__u64 *n = bpf_map_lookup_elem(&skb_drops, &key);

	if (n)
		*n += 1; /* per-CPU slot: no other writer */
	return 0;
}

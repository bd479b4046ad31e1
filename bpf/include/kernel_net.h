/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the net collector's TC programs need beyond kernel.h: the UAPI
 * context of a TC program and the constants of its verdicts and maps
 * (include/uapi/linux/bpf.h, include/uapi/linux/pkt_cls.h).
 *
 * struct __sk_buff is UAPI, not a kernel type: the verifier rewrites its
 * fixed offsets into the real sk_buff's, so it carries no
 * preserve_access_index. Only the leading fields the programs read are
 * declared; their offsets are part of the ABI.
 */
#ifndef BPFSTATD_KERNEL_NET_H
#define BPFSTATD_KERNEL_NET_H

#include "kernel.h"

enum {
	BPF_MAP_TYPE_PERCPU_HASH = 5,
};

/* map_flags: allocate hash elements on update instead of all at load. */
enum {
	BPF_F_NO_PREALLOC = 1U << 0,
};

/* TC_ACT_UNSPEC for a clsact filter and TCX_NEXT for a TCX program: carry
 * on with the next program or filter, the packet untouched. */
#define TC_ACT_UNSPEC (-1)
#define TCX_NEXT (-1)

struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
};

#endif /* BPFSTATD_KERNEL_NET_H */

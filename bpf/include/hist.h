/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Log2 histograms aggregated in the kernel. Bucket 0 counts the value 0 and
 * bucket i >= 1 counts values in [2^(i-1), 2^i): a value's bucket is its bit
 * length, as Go's bits.Len64. The last bucket also counts every larger
 * value. Histograms live in per-CPU maps, so a program adds to its own CPU's
 * copy without atomics; user space sums the copies (bpf/hist.go mirrors
 * this file).
 */
#ifndef BPFSTATD_HIST_H
#define BPFSTATD_HIST_H

#include "kernel.h"

/* Buckets per histogram: of nanoseconds, the last starts at 2^38 ns (275 s). */
#define HIST_SLOTS 40

struct hist {
	__u64 slots[HIST_SLOTS];
};

/* hist_slot returns the bucket of v: its bit length, capped at the last. */
static __always_inline __u32 hist_slot(__u64 v)
{
	__u32 n = 0;

	if (v >> 32) {
		v >>= 32;
		n += 32;
	}
	if (v >> 16) {
		v >>= 16;
		n += 16;
	}
	if (v >> 8) {
		v >>= 8;
		n += 8;
	}
	if (v >> 4) {
		v >>= 4;
		n += 4;
	}
	if (v >> 2) {
		v >>= 2;
		n += 2;
	}
	if (v >> 1) {
		v >>= 1;
		n += 1;
	}
	n += v; /* v is now 0 or 1 */
	return n < HIST_SLOTS ? n : HIST_SLOTS - 1;
}

/* hist_add counts v in h, this CPU's copy of a histogram. */
static __always_inline void hist_add(struct hist *h, __u64 v)
{
	__u32 slot = hist_slot(v);

	if (slot >= HIST_SLOTS) /* cannot happen; tells the verifier */
		return;
	h->slots[slot] += 1;
}

#endif /* BPFSTATD_HIST_H */

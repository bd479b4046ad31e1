/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What every bpfstatd program shares: the ring buffer of discrete events
 * (or one ring per CPU), the drop ledger and the wakeup limit (one of each
 * for all collectors: the loader hands the same maps to every object), the
 * wakeup policy, and the sampling knob.
 */
#ifndef BPFSTATD_COMMON_H
#define BPFSTATD_COMMON_H

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include "record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader: bytes queued in the ring past which a submit wakes the
 * reader. Below it, records go without a wakeup and the reader's timer
 * collects them. */
volatile const __u64 wakeup_bytes = 64 * 1024;

/* Set by the loader only to measure the wakeup policy against: submits
 * pass flags 0, the kernel's default, which wakes the reader for every
 * record it finds the reader caught up for. */
volatile const bool default_wakeup = false;

/* Changed at run time by the daemon: each CPU keeps one event in
 * sample_rate of each program (deterministically, by its seen count). */
volatile __u32 sample_rate = 1;

/* Set by the loader: records go to the ring of the CPU the program runs
 * on, in events_shards, so that CPUs never contend on one ring; otherwise
 * to events. */
volatile const bool ring_shards = false;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024); /* resized by the loader */
} events SEC(".maps");

struct ring_shard {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024); /* resized by the loader */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* resized by the loader: a ring per CPU */
	__type(key, __u32);
	__array(values, struct ring_shard);
} events_shards SEC(".maps");

/* event_ring returns the ring this CPU writes to (NULL if its shard is
 * missing, which cannot happen). The loader's ring_shards picks one branch
 * at load time: the other is never verified or run. */
static __always_inline void *event_ring(void)
{
	__u32 cpu;

	if (!ring_shards)
		return &events;
	cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&events_shards, &cpu);
}

/* Each CPU's jiffy of its last forced wakeup, of any program (the loader
 * hands every object the same map). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} wakeup_jiffy SEC(".maps");

/* wakeup_flags returns the submit flags of a record in ring: a forced
 * wakeup once wakeup_bytes are queued, but at most one a jiffy on each
 * CPU. Past the threshold a reader that is behind or stalled would
 * otherwise take a wakeup (an IRQ work interrupt, microseconds) for every
 * record until it catches up or the ring fills; one a jiffy still wakes it
 * soon after the threshold, and edge-triggered, it drains all it finds. */
static __always_inline __u64 wakeup_flags(void *ring)
{
	__u32 zero = 0;
	__u64 *last, now;

	if (!ring || bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) < wakeup_bytes)
		return BPF_RB_NO_WAKEUP;
	last = bpf_map_lookup_elem(&wakeup_jiffy, &zero);
	now = bpf_jiffies64();
	if (last) {
		if (*last == now)
			return BPF_RB_NO_WAKEUP;
		*last = now;
	}
	return BPF_RB_FORCE_WAKEUP;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROG_MAX * LEDGER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} ledger SEC(".maps");

/* ledger_slot returns this CPU's count in a program's slot (NULL if the
 * slot is missing, which cannot happen). */
static __always_inline __u64 *ledger_slot(__u32 prog, __u32 slot)
{
	__u32 key = prog * LEDGER_SLOTS + slot;

	return bpf_map_lookup_elem(&ledger, &key);
}

/* ledger_addn adds n to a program's slot and returns the new per-CPU
 * count (0 if the slot is missing, which cannot happen). */
static __always_inline __u64 ledger_addn(__u32 prog, __u32 slot, __u64 n)
{
	__u64 *v = ledger_slot(prog, slot);

	if (!v)
		return 0;
	*v += n; /* per-CPU slot: no other writer */
	return *v;
}

/* ledger_add counts one event in a program's slot and returns the new
 * per-CPU count. */
static __always_inline __u64 ledger_add(__u32 prog, __u32 slot)
{
	return ledger_addn(prog, slot, 1);
}

/* ledger_ring_full counts n kept events lost to a full ring, taken at
 * sample rate: n times as kept events and n * rate times as the events
 * they stood for. */
static __always_inline void ledger_ring_full(__u32 prog, __u32 rate, __u64 n)
{
	ledger_addn(prog, LEDGER_RING_FULL, n);
	ledger_addn(prog, LEDGER_RING_FULL_EVENTS, rate > 1 ? n * rate : n);
}

/* ledger_emitted counts a record submitted for n kept events. */
static __always_inline void ledger_emitted(__u32 prog, __u64 n)
{
	ledger_addn(prog, LEDGER_EMITTED, n);
	ledger_add(prog, LEDGER_RECORDS);
}

/* record_reserve counts an event for prog and, unless sampling skips it or
 * the ring is full (each counted too), reserves a record of the given type
 * and fills its header. A non-NULL result must go to record_submit. */
#define record_reserve(prog, kind, type) ((type *)reserve_record((prog), (kind), sizeof(type)))

static __always_inline void *reserve_record(__u32 prog, __u32 kind, __u64 size)
{
	__u32 rate = sample_rate;
	__u64 seen = ledger_add(prog, LEDGER_SEEN);
	struct record_header *h;

	if (rate > 1 && seen % rate != 0) {
		ledger_add(prog, LEDGER_SAMPLED_OUT);
		return NULL;
	}
	void *ring = event_ring();

	h = ring ? bpf_ringbuf_reserve(ring, size, 0) : NULL;
	if (!h) {
		ledger_ring_full(prog, rate, 1);
		return NULL;
	}
	h->kind = kind;
	h->rate = rate > 1 ? rate : 1;
	h->ts_ns = bpf_ktime_get_ns();
	return h;
}

/* record_submit submits a reserved record, waking the reader as
 * wakeup_flags says, and counts it as emitted. */
static __always_inline void record_submit(__u32 prog, void *r)
{
	__u64 flags = 0;

	if (!default_wakeup)
		flags = wakeup_flags(event_ring()); /* the ring reserved from: same CPU */
	bpf_ringbuf_submit(r, flags);
	ledger_emitted(prog, 1);
}

#endif /* BPFSTATD_COMMON_H */

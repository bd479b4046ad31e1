//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * block: block I/O latency per disk, from a request's issue to the driver
 * to its completion, as a log2 histogram of nanoseconds (hist.h) in a
 * per-CPU hash map keyed by the disk's device number. Only request-based
 * (blk-mq) disks issue requests: bio-based ones (device mapper, md, zram)
 * are not seen, but the disks under them are.
 *
 * Both maps are bounded. When block_start is full, a newly issued request
 * is not timed; when block_hist is full, a new disk's latencies are not
 * counted. Either way the lost latency is counted in the drop ledger as
 * seen and ring_full ("no room"), so seen = emitted + ring_full holds for
 * every request issued while the programs ran and since completed.
 */
#include "common.h"
#include "kernel_sched_block.h"
#include "hist.h"
#include <bpf/bpf_tracing.h>

/* Requests in flight that can be timed at once. */
#define BLOCK_MAX_INFLIGHT 10240
/* Disks with a histogram. */
#define BLOCK_MAX_DISKS 256

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BLOCK_MAX_INFLIGHT);
	__type(key, __u64);   /* struct request pointer */
	__type(value, __u64); /* bpf_ktime_get_ns() at issue */
} block_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, BLOCK_MAX_DISKS);
	__type(key, __u32); /* the disk's dev_t: major << 20 | first_minor */
	__type(value, struct hist);
} block_hist SEC(".maps");

/* block_lost counts a latency that had no room in a map. */
static __always_inline void block_lost(void)
{
	ledger_add(PROG_BLOCK, LEDGER_SEEN);
	ledger_ring_full(PROG_BLOCK, 1, 1);
}

/* block_issue counts nothing by itself: it notes when a request went to the
 * driver. A request issued again after a requeue restarts its clock. */
SEC("tp_btf/block_rq_issue")
int BPF_PROG(block_issue, struct request *rq)
{
	__u64 key = (__u64)rq;
	__u64 now = bpf_ktime_get_ns();

	if (bpf_map_update_elem(&block_start, &key, &now, BPF_ANY))
		block_lost();
	return 0;
}

/* disk_hist returns this CPU's histogram of disk dev, creating it if there
 * is room. */
static __always_inline struct hist *disk_hist(__u32 dev)
{
	static const struct hist zero;
	struct hist *h = bpf_map_lookup_elem(&block_hist, &dev);

	if (h)
		return h;
	/* Another CPU may create it first: then this update fails, and the
	 * lookup finds theirs. */
	bpf_map_update_elem(&block_hist, &dev, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&block_hist, &dev);
}

/* block_complete counts, per disk, one latency per request completed that
 * block_issue timed (seen, and emitted once in a histogram). A partial
 * completion, after which the request goes on, counts nothing. */
SEC("tp_btf/block_rq_complete")
int BPF_PROG(block_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq;
	__u64 *start, now;
	struct gendisk *disk;
	struct hist *h;
	__s64 delta;
	__u32 dev;

	if (nr_bytes < rq->__data_len)
		return 0;
	start = bpf_map_lookup_elem(&block_start, &key);
	if (!start)
		return 0; /* issued before the programs were attached, or lost */
	now = bpf_ktime_get_ns();
	delta = now - *start;
	bpf_map_delete_elem(&block_start, &key);

	disk = rq->q->disk;
	dev = disk ? (__u32)disk->major << 20 | (__u32)disk->first_minor : 0;
	h = disk_hist(dev);
	if (!h) {
		block_lost();
		return 0;
	}
	hist_add(h, delta > 0 ? delta : 0);
	ledger_add(PROG_BLOCK, LEDGER_SEEN);
	ledger_add(PROG_BLOCK, LEDGER_EMITTED);
	return 0;
}

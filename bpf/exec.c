//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * exec: one ring-buffer record per successful execve, from the
 * sched_process_exec tracepoint (BTF-typed, so no tracefs is needed).
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader; bytes queued in the ring past which a submit wakes the
 * reader. Below it, records are submitted without a wakeup and the reader's
 * timer collects them. */
volatile const __u64 wakeup_bytes = 64 * 1024;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024); /* resized by the loader */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LEDGER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} ledger SEC(".maps");

static __always_inline void ledger_add(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&ledger, &slot);

	if (n)
		*n += 1; /* per-CPU slot: no other writer */
}

static __always_inline __u64 submit_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct exec_record *r;
	__u64 id;

	ledger_add(LEDGER_SEEN);
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		ledger_add(LEDGER_RING_FULL);
		return 0;
	}
	id = bpf_get_current_pid_tgid();
	r->hdr.kind = RECORD_EXEC;
	r->hdr.rate = 1;
	r->hdr.ts_ns = bpf_ktime_get_ns();
	r->pid = (__u32)id;
	r->tgid = id >> 32;
	BPF_CORE_READ_STR_INTO(&r->comm, task, comm);
	bpf_ringbuf_submit(r, submit_flags());
	ledger_add(LEDGER_EMITTED);
	return 0;
}

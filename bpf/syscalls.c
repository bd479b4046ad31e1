//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * syscalls: every syscall entered on the host, from the raw sys_enter
 * tracepoint (BTF-typed, no tracefs): counted per CPU by number, and, when
 * asked for, a ring-buffer record per syscall naming the task that made it.
 */
#include "common.h"
#include "kernel_syscalls.h"
#include "record_syscalls.h"
#include <bpf/bpf_tracing.h>

/* Set by the loader, for the overhead benchmark only: submit every record
 * with the kernel's default wakeup (flags 0), the naive way. */
volatile const bool default_wakeup = false;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SYSCALL_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} syscall_counts SEC(".maps");

/* Counts each syscall in its number's per-CPU slot, or in the last slot
 * when the number is out of range. */
SEC("tp_btf/sys_enter")
int BPF_PROG(count_syscall, struct pt_regs *regs, long id)
{
	__u32 key = (unsigned long)id < SYSCALL_NR_MAX ? id : SYSCALL_NR_MAX;
	__u64 *n = bpf_map_lookup_elem(&syscall_counts, &key);

	if (n)
		*n += 1; /* per-CPU slot: no other writer */
	return 0;
}

/*
 * Writes a record per syscall: its number, the thread, the process and the
 * thread's name, for counts by process name in user space. At millions of
 * events a second this is the busiest writer of the ring, so it does less
 * than record_reserve and record_submit in common.h, with the same ledger:
 *  - the task's ids and name are read straight from the BTF-typed current
 *    task, without helper calls;
 *  - the clock, which costs as much as the ring itself on a VM, is read
 *    for one record in SYSCALL_TICK of each CPU (ts_ns is 0 on the others);
 *  - the ring's fill is checked on those same records only: past
 *    wakeup_bytes, that one record wakes the reader. Waking on every record
 *    past the threshold, until the reader catches up, makes each one pay
 *    for a wakeup: the cost this program exists to avoid.
 */
#define SYSCALL_TICK 64

SEC("tp_btf/sys_enter")
int BPF_PROG(record_syscall, struct pt_regs *regs, long id)
{
	__u32 rate = sample_rate;
	__u64 seen = ledger_add(PROG_SYSCALL_PROC, LEDGER_SEEN);
	bool tick = seen % SYSCALL_TICK == 0;
	struct syscall_record *r;
	struct task_struct *task;
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (rate > 1 && seen % rate != 0) {
		ledger_add(PROG_SYSCALL_PROC, LEDGER_SAMPLED_OUT);
		return 0;
	}
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		ledger_ring_full(PROG_SYSCALL_PROC, rate);
		return 0;
	}
	task = bpf_get_current_task_btf();
	r->hdr.kind = RECORD_SYSCALL;
	r->hdr.rate = rate > 1 ? rate : 1;
	r->hdr.ts_ns = tick ? bpf_ktime_get_ns() : 0;
	r->nr = id;
	r->pid = task->pid;
	r->tgid = task->tgid;
	r->pad = 0;
	/* Two 8-byte loads, where a memcpy of chars would make four. */
	*(__u64 *)&r->comm[0] = *(__u64 *)&task->comm[0];
	*(__u64 *)&r->comm[8] = *(__u64 *)&task->comm[8];
	if (default_wakeup)
		flags = 0;
	else if (tick && bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(r, flags);
	ledger_add(PROG_SYSCALL_PROC, LEDGER_EMITTED);
	return 0;
}

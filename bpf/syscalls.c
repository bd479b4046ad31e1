//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * syscalls: every syscall entered on the host, from the raw sys_enter
 * tracepoint (BTF-typed, no tracefs): counted per CPU by number, and, when
 * asked for, a ring-buffer record per run of identical syscalls naming the
 * task that made them.
 */
#include "common.h"
#include "kernel_syscalls.h"
#include "record_syscalls.h"
#include <bpf/bpf_tracing.h>

/* How the by-process program writes records. The loader sets it; only the
 * overhead benchmark asks for anything but runs. */
enum record_mode {
	RECORD_RUNS = 0,  /* a record per run of identical syscalls */
	RECORD_EACH = 1,  /* a record per syscall */
	RECORD_NAIVE = 2, /* a record per syscall, each waking the reader
			   * the kernel's default way (flags 0) */
};

volatile const __u32 record_mode = RECORD_RUNS;

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
 * The by-process program. At millions of syscalls a second it is the
 * busiest writer of the ring, so it writes as few records as it can: each
 * CPU keeps one open run of identical syscalls (same number, thread and
 * name) and submits it as one record when a different syscall comes, when
 * the jiffy changes (a few ms at most), or when the daemon asks
 * (flush_syscall_run, run on every CPU once per interval and after
 * detaching). A thread that repeats a syscall in a loop then costs a few
 * loads and an add per call, not a ring reservation. Beyond that:
 *  - the task's ids and name are read straight from the BTF-typed current
 *    task, without helper calls;
 *  - the clock, which costs as much as the ring itself on a VM, is read
 *    when a run opens in a new jiffy, and for one run in SYSCALL_TICK
 *    syscalls otherwise (ts_ns is 0 on the others);
 *  - the ring's fill is checked on those tick records only: past
 *    wakeup_bytes, that one record wakes the reader (at most once a jiffy
 *    on each CPU, as wakeup_flags does for every program). Waking on every
 *    record past the threshold, until the reader catches up, makes each
 *    one pay for a wakeup: the cost this program exists to avoid.
 * The open run's count is the ledger's pending slot, so the ledger balances
 * at any time.
 */
#define SYSCALL_TICK 64

/* A run is submitted once it holds this many syscalls. */
#define SYSCALL_RUN_MAX (1u << 30)

/* syscall_run is a CPU's open run: rec without its count, which is the
 * ledger's pending slot (0: no run open). */
struct syscall_run {
	struct syscall_record rec;
	__u64 jiffies; /* when the run opened */
	__u32 busy;    /* record_syscall is changing the run */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct syscall_run);
} syscall_runs SEC(".maps");

/* run_submit submits the CPU's open run, if any, as one record of pending
 * syscalls, or counts them lost to a full ring. */
static __always_inline void run_submit(struct syscall_run *run, __u64 *pending, bool tick)
{
	struct syscall_record *r;
	__u64 n = *pending;
	__u64 flags = BPF_RB_NO_WAKEUP;
	void *ring;

	if (!n)
		return;
	*pending = 0;
	ring = event_ring();
	r = ring ? bpf_ringbuf_reserve(ring, sizeof(*r), 0) : NULL;
	if (!r) {
		ledger_ring_full(PROG_SYSCALL_PROC, run->rec.hdr.rate, n);
		return;
	}
	__builtin_memcpy(r, &run->rec, sizeof(*r));
	r->count = n;
	if (tick)
		flags = wakeup_flags(ring);
	bpf_ringbuf_submit(r, flags);
	ledger_emitted(PROG_SYSCALL_PROC, n);
}

/* record_each writes a record of one syscall (the benchmark's modes). */
static __always_inline void record_each(struct task_struct *task, long id, __u32 rate, bool tick)
{
	struct syscall_record *r;
	__u64 flags = BPF_RB_NO_WAKEUP;
	void *ring = event_ring();

	r = ring ? bpf_ringbuf_reserve(ring, sizeof(*r), 0) : NULL;
	if (!r) {
		ledger_ring_full(PROG_SYSCALL_PROC, rate, 1);
		return;
	}
	r->hdr.kind = RECORD_SYSCALL;
	r->hdr.rate = rate;
	r->hdr.ts_ns = tick ? bpf_ktime_get_ns() : 0;
	r->nr = id;
	r->pid = task->pid;
	r->tgid = task->tgid;
	r->count = 1;
	/* Two 8-byte loads, where a memcpy of chars would make four. */
	*(__u64 *)&r->comm[0] = *(__u64 *)&task->comm[0];
	*(__u64 *)&r->comm[8] = *(__u64 *)&task->comm[8];
	if (record_mode == RECORD_NAIVE)
		flags = 0;
	else if (tick)
		flags = wakeup_flags(ring);
	bpf_ringbuf_submit(r, flags);
	ledger_emitted(PROG_SYSCALL_PROC, 1);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(record_syscall, struct pt_regs *regs, long id)
{
	__u32 rate = sample_rate;
	__u64 seen = ledger_add(PROG_SYSCALL_PROC, LEDGER_SEEN);
	bool tick = seen % SYSCALL_TICK == 0;
	struct task_struct *task;
	struct syscall_run *run;
	__u64 *pending, now, comm0, comm1;
	__u32 zero = 0, pid, tgid;

	if (rate > 1 && seen % rate != 0) {
		ledger_add(PROG_SYSCALL_PROC, LEDGER_SAMPLED_OUT);
		return 0;
	}
	rate = rate > 1 ? rate : 1;
	task = bpf_get_current_task_btf();
	if (record_mode != RECORD_RUNS) {
		record_each(task, id, rate, tick);
		return 0;
	}
	run = bpf_map_lookup_elem(&syscall_runs, &zero);
	pending = ledger_slot(PROG_SYSCALL_PROC, LEDGER_PENDING);
	if (!run || !pending) { /* cannot happen */
		ledger_ring_full(PROG_SYSCALL_PROC, rate, 1);
		return 0;
	}
	pid = task->pid;
	tgid = task->tgid;
	comm0 = *(__u64 *)&task->comm[0];
	comm1 = *(__u64 *)&task->comm[8];
	now = bpf_jiffies64();
	/* flush_syscall_run, run in an interrupt on this CPU, leaves the run
	 * alone while this is set. */
	run->busy = 1;
	barrier();
	if (*pending && *pending < SYSCALL_RUN_MAX && run->jiffies == now && run->rec.nr == (__u32)id &&
	    run->rec.pid == pid && run->rec.tgid == tgid && run->rec.hdr.rate == rate &&
	    *(__u64 *)&run->rec.comm[0] == comm0 && *(__u64 *)&run->rec.comm[8] == comm1) {
		*pending += 1;
	} else {
		bool fresh = run->jiffies != now;

		run_submit(run, pending, tick);
		run->rec.hdr.kind = RECORD_SYSCALL;
		run->rec.hdr.rate = rate;
		run->rec.hdr.ts_ns = tick || fresh ? bpf_ktime_get_ns() : 0;
		run->rec.nr = id;
		run->rec.pid = pid;
		run->rec.tgid = tgid;
		run->rec.count = 0;
		*(__u64 *)&run->rec.comm[0] = comm0;
		*(__u64 *)&run->rec.comm[8] = comm1;
		run->jiffies = now;
		*pending = 1;
	}
	barrier();
	run->busy = 0;
	return 0;
}

/* flush_syscall_run submits this CPU's open run. User space runs it on
 * each CPU (BPF_F_TEST_RUN_ON_CPU): once per interval, so that a run on a
 * CPU gone quiet waits no longer, and after detaching, so that nothing is
 * left behind. Run in an interrupt that stopped record_syscall halfway, it
 * leaves the run to record_syscall. */
SEC("raw_tp")
int flush_syscall_run(void *ctx)
{
	__u32 zero = 0;
	struct syscall_run *run = bpf_map_lookup_elem(&syscall_runs, &zero);
	__u64 *pending = ledger_slot(PROG_SYSCALL_PROC, LEDGER_PENDING);

	if (run && pending && !run->busy)
		run_submit(run, pending, true);
	return 0;
}

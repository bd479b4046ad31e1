//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * runq: run-queue latency, the time a task waits on a run queue before it
 * runs, as a log2 histogram of nanoseconds (hist.h) in a per-CPU array. A
 * task starts waiting when it is woken (sched_wakeup, sched_wakeup_new) or
 * when it is switched out still runnable (preempted, or yielding), and
 * stops when it is switched in. The idle tasks (pid 0) are left out.
 *
 * runq_start, keyed by pid (thread id), is bounded: when it is full, a
 * task's wait is not timed, and is counted in the drop ledger as seen and
 * ring_full ("no room"), so seen = emitted + ring_full holds for every wait
 * that started while the programs ran and has ended.
 */
#include "common.h"
#include "kernel_sched_block.h"
#include "hist.h"
#include <bpf/bpf_tracing.h>

/* Tasks that can wait at once: runnable tasks, with room to spare. */
#define RUNQ_MAX_WAITING 10240

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RUNQ_MAX_WAITING);
	__type(key, __u32);   /* pid */
	__type(value, __u64); /* bpf_ktime_get_ns() when it started waiting */
} runq_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} runq_hist SEC(".maps");

/* runq_enqueue notes that task pid starts waiting now. With BPF_NOEXIST, a
 * wait already under way keeps its start. */
static __always_inline void runq_enqueue(__u32 pid, __u64 flags)
{
	__u64 now = bpf_ktime_get_ns();
	long err;

	if (!pid)
		return;
	err = bpf_map_update_elem(&runq_start, &pid, &now, flags);
	if (err && err != -EEXIST) {
		ledger_add(PROG_RUNQ, LEDGER_SEEN);
		ledger_ring_full(PROG_RUNQ, 1, 1);
	}
}

/* runq_wakeup counts nothing by itself: a woken task starts waiting. A
 * task woken while still on its CPU (it had not gone to sleep yet) starts
 * a wait that its next switch-out restarts or ends. */
SEC("tp_btf/sched_wakeup")
int BPF_PROG(runq_wakeup, struct task_struct *p)
{
	runq_enqueue(p->pid, BPF_NOEXIST);
	return 0;
}

/* runq_wakeup_new: a new task starts waiting for its first run. */
SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(runq_wakeup_new, struct task_struct *p)
{
	runq_enqueue(p->pid, BPF_NOEXIST);
	return 0;
}

/* runq_switch counts one latency per task switched in after a timed wait
 * (seen, and emitted once in the histogram). The task switched out starts
 * waiting if it is still runnable; otherwise it goes to sleep (or exits),
 * and any wait noted for it is forgotten. */
SEC("tp_btf/sched_switch")
int BPF_PROG(runq_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 pid = prev->pid, zero = 0;
	__u64 *start;
	struct hist *h;
	__s64 delta;

	if (preempt || prev_state == TASK_RUNNING)
		runq_enqueue(pid, BPF_ANY);
	else if (pid)
		bpf_map_delete_elem(&runq_start, &pid);

	pid = next->pid;
	if (!pid)
		return 0;
	start = bpf_map_lookup_elem(&runq_start, &pid);
	if (!start)
		return 0; /* runnable since before the programs were attached, or lost */
	delta = bpf_ktime_get_ns() - *start;
	bpf_map_delete_elem(&runq_start, &pid);

	h = bpf_map_lookup_elem(&runq_hist, &zero);
	if (!h)
		return 0; /* cannot happen: an array has every key */
	hist_add(h, delta > 0 ? delta : 0);
	ledger_add(PROG_RUNQ, LEDGER_SEEN);
	ledger_add(PROG_RUNQ, LEDGER_EMITTED);
	return 0;
}

//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * process: a ring-buffer record per exec, per process exit, and per new
 * process (fork), from BTF-typed scheduler tracepoints, which need no
 * tracefs. Their task arguments are BTF-typed pointers: fields are read
 * with plain loads (CO-RE relocated), not bpf_probe_read_kernel calls.
 */
#include "common.h"
#include <bpf/bpf_tracing.h>

/* copy_comm copies a task's name in two 8-byte loads. */
static __always_inline void copy_comm(char *dst, const struct task_struct *task)
{
	*(__u64 *)&dst[0] = *(const __u64 *)&task->comm[0];
	*(__u64 *)&dst[8] = *(const __u64 *)&task->comm[8];
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct process_record *r = record_reserve(PROG_EXEC, RECORD_EXEC, struct process_record);

	if (!r)
		return 0;
	r->pid = task->pid;
	r->tgid = task->tgid;
	r->other = old_pid;
	r->code = 0;
	copy_comm(r->comm, task);
	record_submit(PROG_EXEC, r);
	return 0;
}

/* Threads exit too: only the last task of a thread group makes a record. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *task, bool group_dead)
{
	struct process_record *r;

	if (!group_dead)
		return 0;
	r = record_reserve(PROG_EXIT, RECORD_EXIT, struct process_record);
	if (!r)
		return 0;
	r->pid = task->pid;
	r->tgid = task->tgid;
	r->other = 0;
	r->code = task->signal->group_exit_code ?: task->exit_code;
	copy_comm(r->comm, task);
	record_submit(PROG_EXIT, r);
	return 0;
}

/* New threads fire this tracepoint too: only a new thread group counts. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	struct process_record *r;
	pid_t pid = child->pid;

	if (pid != child->tgid)
		return 0;
	r = record_reserve(PROG_FORK, RECORD_FORK, struct process_record);
	if (!r)
		return 0;
	r->pid = pid;
	r->tgid = pid;
	r->other = parent->tgid;
	r->code = 0;
	copy_comm(r->comm, child);
	record_submit(PROG_FORK, r);
	return 0;
}

//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * process: a ring-buffer record per exec, per process exit, and per new
 * process (fork), from BTF-typed scheduler tracepoints, which need no
 * tracefs.
 */
#include "common.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct process_record *r = record_reserve(PROG_EXEC, RECORD_EXEC, struct process_record);

	if (!r)
		return 0;
	r->pid = BPF_CORE_READ(task, pid);
	r->tgid = BPF_CORE_READ(task, tgid);
	r->other = old_pid;
	r->code = 0;
	BPF_CORE_READ_STR_INTO(&r->comm, task, comm);
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
	r->pid = BPF_CORE_READ(task, pid);
	r->tgid = BPF_CORE_READ(task, tgid);
	r->other = 0;
	r->code = BPF_CORE_READ(task, signal, group_exit_code) ?: BPF_CORE_READ(task, exit_code);
	BPF_CORE_READ_STR_INTO(&r->comm, task, comm);
	record_submit(PROG_EXIT, r);
	return 0;
}

/* New threads fire this tracepoint too: only a new thread group counts. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	struct process_record *r;
	pid_t pid = BPF_CORE_READ(child, pid);

	if (pid != BPF_CORE_READ(child, tgid))
		return 0;
	r = record_reserve(PROG_FORK, RECORD_FORK, struct process_record);
	if (!r)
		return 0;
	r->pid = pid;
	r->tgid = pid;
	r->other = BPF_CORE_READ(parent, tgid);
	r->code = 0;
	BPF_CORE_READ_STR_INTO(&r->comm, child, comm);
	record_submit(PROG_FORK, r);
	return 0;
}

//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * oom: a ring-buffer record per task the OOM killer chooses, from the
 * BTF-typed mark_victim tracepoint (no tracefs needed). The kernel marks
 * each victim once; its other threads and processes sharing its memory die
 * with it but are not marked.
 */
#include "common.h"
#include "record_tcp.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/* Counts each OOM victim: its ids, uid and name. */
SEC("tp_btf/mark_victim")
int BPF_PROG(handle_oom, struct task_struct *task, __u32 uid)
{
	struct oom_record *r = record_reserve(PROG_OOM, RECORD_OOM, struct oom_record);

	if (!r)
		return 0;
	r->pid = BPF_CORE_READ(task, pid);
	r->tgid = BPF_CORE_READ(task, tgid);
	r->uid = uid;
	r->pad = 0;
	__builtin_memset(r->comm, 0, sizeof(r->comm));
	BPF_CORE_READ_STR_INTO(&r->comm, task, comm);
	record_submit(PROG_OOM, r);
	return 0;
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The syscalls collector's counter layout and ring-buffer record. The Go
 * mirror is bpf/syscalls.go.
 */
#ifndef BPFSTATD_RECORD_SYSCALLS_H
#define BPFSTATD_RECORD_SYSCALLS_H

#include "record.h"

/* Syscall numbers below SYSCALL_NR_MAX are counted in their own slot of
 * syscall_counts; every other number (invalid ones, x32's) in the slot at
 * SYSCALL_NR_MAX. */
#define SYSCALL_NR_MAX 512
#define SYSCALL_SLOTS (SYSCALL_NR_MAX + 1)

/* syscall: a run of count syscalls entered in a row on one CPU, all with
 * the same number, by the same thread, named comm. hdr.ts_ns is the
 * first one's time, or 0 (see syscalls.c). */
struct syscall_record {
	struct record_header hdr;
	__u32 nr;    /* syscall number, truncated to 32 bits */
	__u32 pid;   /* thread id */
	__u32 tgid;  /* process id */
	__u32 count; /* syscalls in the run, each standing for hdr.rate */
	char comm[TASK_COMM_LEN];
};

#endif /* BPFSTATD_RECORD_SYSCALLS_H */

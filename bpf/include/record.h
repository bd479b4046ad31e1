/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Records that bpfstatd's programs hand to user space, and the slots of the
 * drop ledger. The Go mirror of this file is bpf/record.go; kernel tests
 * decode real records and compare them with the processes they came from.
 */
#ifndef BPFSTATD_RECORD_H
#define BPFSTATD_RECORD_H

#include "kernel.h"

/* Kinds of ring-buffer record. Zero is never sent. */
enum record_kind {
	RECORD_EXEC = 1,
};

/* The first 16 bytes of every ring-buffer record. */
struct record_header {
	__u32 kind;  /* enum record_kind */
	__u32 rate;  /* 1-in-rate sampling that let this record through; 1 = all */
	__u64 ts_ns; /* bpf_ktime_get_ns() when the event happened */
};

/* A process called execve: comm is the new program's name. */
struct exec_record {
	struct record_header hdr;
	__u32 pid;  /* thread id */
	__u32 tgid; /* process id */
	char comm[TASK_COMM_LEN];
};

/* Slots of a per-CPU drop ledger: for ring-buffer programs,
 * seen = emitted + ring_full + sampled_out holds exactly. */
enum ledger_slot {
	LEDGER_SEEN = 0,
	LEDGER_EMITTED = 1,
	LEDGER_RING_FULL = 2,
	LEDGER_SAMPLED_OUT = 3,
	LEDGER_SLOTS = 4,
};

#endif /* BPFSTATD_RECORD_H */

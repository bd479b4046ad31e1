/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Records that bpfstatd's programs hand to user space, the programs' ids in
 * the drop ledger, and the ledger's slots. The Go mirror of this file is
 * bpf/record.go; kernel tests decode real records and compare them with the
 * processes and packets they came from.
 */
#ifndef BPFSTATD_RECORD_H
#define BPFSTATD_RECORD_H

#include "kernel.h"

/* Kinds of ring-buffer record. Zero is never sent. */
enum record_kind {
	RECORD_EXEC = 1,
	RECORD_EXIT = 2,
	RECORD_FORK = 3,
	RECORD_TCP = 4,
	RECORD_OOM = 5,
	RECORD_SYSCALL = 6,
};

/* Programs, each with its own section of the drop ledger. */
enum prog_id {
	PROG_EXEC = 0,
	PROG_EXIT = 1,
	PROG_FORK = 2,
	PROG_TCP_RETRANSMIT = 3,
	PROG_TCP_SEND_RESET = 4,
	PROG_TCP_RECEIVE_RESET = 5,
	PROG_TCP_STATE = 6,
	PROG_OOM = 7,
	PROG_SYSCALL_PROC = 8,
	PROG_SKB_DROP = 9,
	PROG_SYSCALLS = 10,
	PROG_NET_INGRESS = 11,
	PROG_NET_EGRESS = 12,
	PROG_BLOCK = 13,
	PROG_RUNQ = 14,
	PROG_MAX = 16,
};

/* Slots of each program's per-CPU drop ledger. For ring-buffer programs
 *	seen = emitted + ring_full + sampled_out + pending
 * holds exactly, each term counting events kept or skipped:
 *  - emitted: events in records submitted to the ring;
 *  - ring_full: events in records lost because the ring had no room;
 *  - sampled_out: events skipped by sampling;
 *  - pending: events in a run the CPU has not submitted yet (only the
 *    by-process syscall program writes runs: one record for a row of
 *    identical events; it is a gauge, zero once the run is submitted).
 * records counts records submitted (emitted weighs each by its events);
 * ring_full_events weighs each event lost to a full ring by the sample rate
 * it was taken at: the events it stood for. */
enum ledger_slot {
	LEDGER_SEEN = 0,
	LEDGER_EMITTED = 1,
	LEDGER_RING_FULL = 2,
	LEDGER_SAMPLED_OUT = 3,
	LEDGER_RING_FULL_EVENTS = 4,
	LEDGER_RECORDS = 5,
	LEDGER_PENDING = 6,
	LEDGER_SLOTS = 7,
};

/* The first 16 bytes of every ring-buffer record. */
struct record_header {
	__u32 kind;  /* enum record_kind */
	__u32 rate;  /* 1-in-rate sampling that let this record through; 1 = all */
	__u64 ts_ns; /* bpf_ktime_get_ns() when the event happened */
};

/* exec: the task after execve, comm is the new program's name.
 * exit: a process (thread group) ended; code is its exit_code.
 * fork: a new process; pid/tgid are the child's, other is the parent's tgid,
 *       comm the child's (inherited from the parent). */
struct process_record {
	struct record_header hdr;
	__u32 pid;
	__u32 tgid;
	__u32 other;
	__s32 code;
	char comm[TASK_COMM_LEN];
};

#endif /* BPFSTATD_RECORD_H */

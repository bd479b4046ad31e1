/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel definitions for the block I/O and run-queue latency programs, on
 * top of kernel.h: the few fields of a block request they read, and the map
 * types, update flags and errors they use (values from the kernel UAPI).
 * Structs are CO-RE (preserve_access_index); check them against
 *
 *   bpftool btf dump file /sys/kernel/btf/vmlinux format c
 */
#ifndef BPFSTATD_KERNEL_SCHED_BLOCK_H
#define BPFSTATD_KERNEL_SCHED_BLOCK_H

#include "kernel.h"

/* Map types beyond kernel.h's (enum bpf_map_type). */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
};

/* Flags of bpf_map_update_elem. */
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

/* Errors that map updates return, negated. */
enum {
	E2BIG = 7,
	EEXIST = 17,
};

/* A task's state when it is on a run queue (task_struct.__state). */
#define TASK_RUNNING 0

typedef __u8 blk_status_t;

struct gendisk {
	int major;
	int first_minor;
} __attribute__((preserve_access_index));

struct request_queue {
	struct gendisk *disk;
} __attribute__((preserve_access_index));

struct request {
	struct request_queue *q;
	unsigned int __data_len; /* bytes not yet completed */
} __attribute__((preserve_access_index));

#endif /* BPFSTATD_KERNEL_SCHED_BLOCK_H */

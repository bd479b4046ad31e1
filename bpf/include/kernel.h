/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Minimal kernel definitions for bpfstatd's programs, in place of a full
 * vmlinux.h. Constants are the kernel UAPI's (include/uapi/linux/bpf.h); the
 * structs carry only the fields the programs read and are marked
 * preserve_access_index, so libbpf-style CO-RE relocations resolve their
 * offsets against the running kernel's BTF at load time. To check or extend
 * them, compare with the kernel's own types:
 *
 *   bpftool btf dump file /sys/kernel/btf/vmlinux format c
 */
#ifndef BPFSTATD_KERNEL_H
#define BPFSTATD_KERNEL_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef int pid_t;
typedef _Bool bool;
enum { false = 0, true = 1 };

enum bpf_map_type {
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_RINGBUF = 27,
};

/* Flags of bpf_ringbuf_submit and bpf_ringbuf_query. */
enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
	BPF_RB_CONS_POS = 2,
	BPF_RB_PROD_POS = 3,
};

#define TASK_COMM_LEN 16

struct signal_struct {
	int group_exit_code;
} __attribute__((preserve_access_index));

struct task_struct {
	pid_t pid;
	pid_t tgid;
	int exit_code;
	char comm[TASK_COMM_LEN];
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

struct linux_binprm;

#endif /* BPFSTATD_KERNEL_H */

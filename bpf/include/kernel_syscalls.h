/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel definitions for the syscalls collector beyond include/kernel.h.
 * The raw sys_enter tracepoint passes (struct pt_regs *regs, long id):
 * the programs read only id, so pt_regs stays an incomplete type.
 */
#ifndef BPFSTATD_KERNEL_SYSCALLS_H
#define BPFSTATD_KERNEL_SYSCALLS_H

#include "kernel.h"

struct pt_regs;

#endif /* BPFSTATD_KERNEL_SYSCALLS_H */

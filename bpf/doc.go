// Package bpf owns bpfstatd's kernel ABI: the C programs (compiled by bpf2go
// into the committed *_bpfel.go and *_bpfel.o files), the layout of the
// records they write to the BPF ring buffer, and a small API that checks the
// kernel can run them, loads and attaches them, and reads their per-CPU drop
// ledgers.
//
// # Kernel requirements
//
// Linux 5.8 or later with BTF (CONFIG_DEBUG_INFO_BTF=y, exposed at
// /sys/kernel/btf/vmlinux), and CAP_BPF with CAP_PERFMON, or root. See
// [CheckSupport].
//
// # Regenerating
//
// The objects are compiled by `go generate` at the module root, which runs
// bpf2go with clang-19. The C sources include only bpf/include and libbpf's
// headers (libbpf-dev), never the host's kernel headers, so the output is the
// same on every machine with the same compiler.
package bpf

// Package bpfstatd is an eBPF-assisted host metrics shipper: programs in the
// kernel count host events, and one Go pipeline aggregates them and ships
// StatsD/DogStatsD datagrams. The daemon is cmd/bpfstatd; this file only
// carries the go:generate line that compiles the kernel programs.
package bpfstatd

//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf -output-dir bpf -output-stem exec exec bpf/exec.c -- -I./bpf/include

// Package bpfstatd is an eBPF-assisted host metrics shipper: programs in the
// kernel count host events, and one Go pipeline aggregates them and ships
// StatsD/DogStatsD datagrams. The daemon is cmd/bpfstatd; this file only
// carries the go:generate lines that compile the kernel programs, one
// object per collector, into package bpf.
package bpfstatd

//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf -output-dir bpf -output-stem process process bpf/process.c -- -I./bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf -output-dir bpf -output-stem net net bpf/net.c -- -I./bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf -output-dir bpf -output-stem tcp tcp bpf/tcp.c -- -I./bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf -output-dir bpf -output-stem oom oom bpf/oom.c -- -I./bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf -output-dir bpf -output-stem skb skb bpf/skb.c -- -I./bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf -output-dir bpf -output-stem block block bpf/block.c -- -I./bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf -output-dir bpf -output-stem runq runq bpf/runq.c -- -I./bpf/include
//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf -output-dir bpf -output-stem syscalls syscalls bpf/syscalls.c -- -I./bpf/include
//go:generate go run bpf/mksyscallnames.go

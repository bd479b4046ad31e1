// Command bpfstatd counts host events with eBPF programs and ships them as
// StatsD/DogStatsD metrics. Run it as root; --help lists the flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/bpfstatd/bpfstatd/internal/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := daemon.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

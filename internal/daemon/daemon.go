// Package daemon is bpfstatd's runtime: it parses the configuration, checks
// the kernel, loads and attaches the programs, drains their ring buffers
// into the aggregator, and ships metrics every flush interval until its
// context ends, when it detaches everything and ships what is left.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/admin"
	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// Main runs the daemon with args and returns the process exit code: 0 after
// a clean shutdown, 2 for a usage error, 1 for any other failure, which it
// reports on stderr in one line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := Run(ctx, args, os.Getenv, stdout, stderr)
	switch {
	case err == nil || errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUnhealthy):
		return 1
	case errors.As(err, new(*UsageError)):
		fmt.Fprintf(stderr, "bpfstatd: %v\nRun 'bpfstatd --help' for usage.\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "bpfstatd: %v\n", err)
		return 1
	}
}

// Run parses args (with defaults from getenv), then runs the daemon until
// ctx is done. Nothing is loaded into the kernel unless the configuration
// is valid.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Query.any() {
		return runQuery(ctx, cfg, stdout)
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err := bpf.CheckSupport(bpf.KernelBTFPath); err != nil {
		return err
	}
	out, err := cfg.Output.open(stdout)
	if err != nil {
		return err
	}
	defer out.Close()
	p, err := newPipeline(out, cfg)
	if err != nil {
		return err
	}
	return runCollectors(ctx, cfg, p, log)
}

// runCollectors loads the collectors, drains their ring into p until ctx
// is done, and ships a last time after detaching.
func runCollectors(ctx context.Context, cfg Config, p *pipeline, log *slog.Logger) (err error) {
	srv, err := admin.Listen(cfg.AdminSocket, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()
	sh, err := bpf.NewShared(bpf.RingOptions{Size: cfg.RingSize, WakeupBytes: cfg.WakeupBytes})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sh.Close()) }()
	proc, err := bpf.LoadProcess(sh)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, proc.Close()) }()
	sh.ReleaseBTF()
	collectors := []bpf.Collector{proc}
	drain, err := ringbuf.NewDrainer(sh.Events(), bpf.DecodeRecord, ringbuf.DrainOptions{Poll: cfg.Poll})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, drain.Close()) }()
	if err := proc.Attach(); err != nil {
		return err
	}
	if !cfg.KeepCaps {
		if err := dropCapabilities(runtimeCaps); err != nil {
			log.Warn("capabilities not dropped", "err", err)
		}
	}
	st := newStatus(cfg, collectors)
	srv.SetSnapshot(st.snapshot)
	log.Info("bpfstatd started", "output", cfg.Output.String(), "flush_interval", cfg.FlushInterval.String(),
		"collectors", proc.Name(), "admin_socket", srv.Path())

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var wg sync.WaitGroup
	var drainErr, adminErr error
	wg.Go(func() { drainErr = drain.Run(bg, p.add) })
	wg.Go(func() { adminErr = srv.Serve(bg) })

	flush := func() {
		if err := p.flush(sh, drain); err != nil {
			log.Warn("ship metrics", "err", err)
		}
		if ledgers, err := sh.Ledgers(); err == nil {
			st.update(ledgers, drain.Stats(), p.packer.Dropped)
		}
	}
	tick := time.NewTicker(cfg.FlushInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			continue
		case <-tick.C:
		}
		flush()
	}
	// Stop intake, read everything the kernel queued, and ship it.
	err = proc.Detach()
	stopBG()
	wg.Wait()
	flush()
	log.Info("bpfstatd stopped", "records", drain.Stats().Records)
	return errors.Join(err, drainErr, adminErr)
}

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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/admin"
	"github.com/bpfstatd/bpfstatd/ringbuf"
	"github.com/bpfstatd/bpfstatd/shipper"
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
	if slices.Contains(cfg.Collectors, "net") {
		if err := bpf.CheckNetAdmin(); err != nil {
			return err
		}
	}
	return runDaemon(ctx, cfg, stdout, log)
}

// runDaemon loads the collectors, drains their ring into the pipeline and
// ships every interval until ctx is done, then detaches everything, reads
// what the kernel still holds, and ships it.
func runDaemon(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger) (err error) {
	srv, err := admin.Listen(cfg.AdminSocket, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()
	sh, err := bpf.NewShared(bpf.RingOptions{Size: cfg.RingSize, WakeupBytes: cfg.WakeupBytes, Shards: cfg.RingShards})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sh.Close()) }()
	srcs, err := openSources(cfg, sh)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range srcs {
			err = errors.Join(err, s.collector().Close())
		}
	}()
	sh.ReleaseBTF()
	ship, err := cfg.Output.open(stdout, shipper.Options{Dialect: cfg.Dialect, MaxPayload: cfg.MaxPayload,
		Queue: cfg.Queue, Breaker: cfg.Breaker})
	if err != nil {
		return err
	}
	p, err := newPipeline(ship, srcs, cfg)
	if err != nil {
		return errors.Join(err, ship.Close(context.Background()))
	}
	drain, err := newDrain(sh, cfg.Poll)
	if err != nil {
		return errors.Join(err, ship.Close(context.Background()))
	}
	defer func() { err = errors.Join(err, drain.Close()) }()
	names := make([]string, 0, len(srcs))
	for _, s := range srcs {
		if err := s.collector().Attach(); err != nil {
			return errors.Join(err, ship.Close(context.Background()))
		}
		names = append(names, s.collector().Name())
	}
	if !cfg.KeepCaps {
		if err := dropCapabilities(runtimeCaps); err != nil {
			log.Warn("capabilities not dropped", "err", err)
		}
	}
	maxLevel := cfg.MaxThrottle
	if maxLevel == 0 {
		maxLevel = -1 // never throttle
	}
	health := shipper.NewHealth(shipper.HealthOptions{MaxLevel: maxLevel, OnLevel: func(old, new shipper.Level) {
		rate := new.SampleEvery()
		for _, s := range srcs {
			if r, ok := s.collector().(bpf.SampleRater); ok {
				if err := r.SetSampleRate(rate); err != nil {
					log.Warn("set kernel sample rate", "err", err)
				}
			}
		}
		log.Info("throttle level changed", "from", int(old), "to", int(new), "kernel_sample_rate", rate)
	}})
	st := newStatus(cfg, srcs, ship, health)
	srv.SetSnapshot(st.snapshot)
	log.Info("bpfstatd started", "output", cfg.Output.String(), "dialect", cfg.Dialect.String(),
		"flush_interval", cfg.FlushInterval.String(), "collectors", strings.Join(names, ","), "admin_socket", srv.Path())

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var wg sync.WaitGroup
	var drainErr, adminErr error
	wg.Go(func() { drainErr = drain.Run(bg, p.add) })
	wg.Go(func() { adminErr = srv.Serve(bg) })

	interval := cfg.FlushInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	flush := func(final bool) (unread uint64) {
		// The ring's fill is taken before the drain catches up: it is
		// what the interval left behind, the health monitor's signal.
		d := drainAt{drain, drain.Fill()}
		if !final {
			syncCtx, cancel := context.WithTimeout(ctx, syncWait)
			if err := drain.Sync(syncCtx); err != nil && ctx.Err() == nil {
				log.Debug("drain before flush", "err", err)
			}
			cancel()
		}
		iv, err := p.flush(sh, d, health.Level(), final)
		if err != nil {
			log.Warn("ship metrics", "err", err)
		}
		level := health.Observe(iv.signals)
		st.update(iv)
		if next := level.FlushInterval(cfg.FlushInterval); next != interval {
			interval = next
			tick.Reset(interval)
		}
		return iv.unread
	}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			continue
		case <-tick.C:
		}
		// Runs that quiet CPUs hold go to the ring, for the drain before
		// the flush to read.
		for _, s := range srcs {
			if f, ok := s.collector().(bpf.RunFlusher); ok {
				if err := f.FlushRuns(); err != nil {
					log.Warn("flush kernel runs", "err", err)
				}
			}
		}
		flush(false)
	}
	// Stop intake, read everything the kernel queued, ship it, and wait
	// (a little) for the sends.
	for _, s := range srcs {
		err = errors.Join(err, s.collector().Detach())
	}
	stopBG()
	wg.Wait()
	unread := flush(true)
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = errors.Join(err, ship.Close(closeCtx))
	if unread > 0 {
		log.Warn("records written by the kernel were never read", "unread", unread)
	}
	log.Info("bpfstatd stopped", "records", drain.Stats().Records)
	return errors.Join(err, drainErr, adminErr)
}

// syncWait bounds the wait, before each flush, for the drain to read what
// the ring holds; what it has not read by then goes with the next flush.
const syncWait = 100 * time.Millisecond

// drainAt is a drain whose Fill is the one taken before the flush.
type drainAt struct {
	recordDrain
	fill float64
}

func (d drainAt) Fill() float64 { return d.fill }

// recordDrain reads the kernel's ring records into the pipeline: a
// [ringbuf.Drainer] of the one ring, or a [ringbuf.ShardedDrainer] of the
// rings of each CPU.
type recordDrain interface {
	Run(ctx context.Context, emit func(*bpf.Record)) error
	Sync(ctx context.Context) error
	Stats() ringbuf.DrainStats
	Fill() float64
	Close() error
}

// newDrain returns the drain of sh's ring, or of its shards.
func newDrain(sh *bpf.Shared, poll time.Duration) (recordDrain, error) {
	opts := ringbuf.DrainOptions{Poll: poll}
	if rings := sh.Shards(); rings != nil {
		return ringbuf.NewShardedDrainer(rings, bpf.DecodeRecord, opts)
	}
	return ringbuf.NewDrainer(sh.Events(), bpf.DecodeRecord, opts)
}

package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/admin"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// EnvPrefix starts the environment variable that can set each flag:
// --flush-interval is also BPFSTATD_FLUSH_INTERVAL. A flag given on the
// command line wins.
const EnvPrefix = "BPFSTATD_"

// Config is the daemon's configuration, as parsed from flags.
type Config struct {
	Collectors        []string
	SyscallsByProcess bool
	Interfaces        []string
	ExcludeInterfaces []string
	Dialect           shipper.Dialect
	MaxSeries         int
	Queue             shipper.QueueOptions
	Breaker           shipper.BreakerOptions
	MaxThrottle       int
	Output            Output
	FlushInterval     time.Duration
	MaxPayload        int
	Tags              []string
	RingSize          uint32
	RingShards        bool
	WakeupBytes       uint64
	Poll              time.Duration
	LogLevel          string
	LogFormat         string
	AdminSocket       string
	// MaxKernelDropRatio is the share of kernel events lost (ring full) in
	// an interval above which the daemon reports itself unhealthy.
	MaxKernelDropRatio float64
	// KeepCaps keeps every capability after start-up (for debugging).
	KeepCaps bool
	Query    Query
}

// Query is a question for a running daemon, asked instead of running one.
type Query struct {
	Status, Drops, Health bool
	JSON, Watch           bool
}

// any reports whether a query was asked for.
func (q Query) any() bool { return q.Status || q.Drops || q.Health }

// UsageError is a problem with the command line; the process exits with 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// errHelp reports that --help was asked for and printed.
var errHelp = errors.New("help requested")

// DefaultPoll is --poll's default. The reader drains the ring before every
// flush and when the kernel wakes it, so its timer only bounds how long
// records below the wakeup threshold wait between flushes: each timer
// wakeup costs CPU even on an idle host.
const DefaultPoll = 100 * time.Millisecond

// ByProcessRingSize is the ring size when --syscalls-by-process is on and
// --ring-size is not given: at worst (no syscall repeating the one before
// on its CPU) a record per syscall fills a small ring between two reads.
// At 1 M such syscalls a second 4 MiB holds about 75 ms of records, and
// the kernel wakes the reader once a quarter of it is used. The ring is mapped into the daemon whole, twice
// over for its data, so it adds twice its size to the daemon's RSS.
const ByProcessRingSize = 4 << 20

// parseConfig parses args, with defaults from the environment, into a
// Config. Usage is written to stderr on --help.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var (
		cfg     Config
		output  string
		tags    []string
		dialect string
		hostTag bool
		policy  string
	)
	fs := pflag.NewFlagSet("bpfstatd", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.StringSliceVar(&cfg.Collectors, "collectors", strings.Split(defaultCollectors, ","), "collectors to run: "+strings.Join(collectorNames, ", "))
	fs.BoolVar(&cfg.SyscallsByProcess, "syscalls-by-process", false, "also count syscalls by process name (a ring record per run of identical syscalls: the busiest path)")
	fs.StringSliceVar(&cfg.Interfaces, "interfaces", nil, "network interfaces to count, as name patterns such as eth* (default: all)")
	fs.StringSliceVar(&cfg.ExcludeInterfaces, "exclude-interfaces", nil, "network interfaces not to count, as name patterns")
	fs.StringVar(&output, "output", "stdout", "where metrics go: stdout, udp://HOST:PORT or unix:///PATH (a unixgram socket)")
	fs.StringVar(&dialect, "dialect", "dogstatsd", "receiver's StatsD flavour: dogstatsd, statsd, statsd_exporter, telegraf or gostatsd")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", time.Second, "how often aggregated metrics are shipped")
	fs.IntVar(&cfg.MaxPayload, "max-payload", 0, "largest datagram payload in bytes, lines never split (0: 1432 for UDP over IPv4, 1232 over IPv6, 8192 for unixgram)")
	fs.StringArrayVar(&tags, "tag", nil, "tag KEY:VALUE added to every metric (repeatable, or comma-separated)")
	fs.BoolVar(&hostTag, "host-tag", true, "tag every metric host:NAME, NAME from $NODE_NAME or the hostname")
	fs.StringVar(&policy, "drop-policy", "priority", "what a full send queue drops: priority (lowest priority first, then oldest), oldest or newest")
	fs.IntVar(&cfg.Queue.Capacity, "queue-size", shipper.DefaultQueueCapacity, "most datagrams waiting to be sent")
	fs.IntVar(&cfg.Breaker.Threshold, "breaker-threshold", shipper.DefaultBreakerThreshold, "consecutive failed send rounds that open the circuit breaker")
	fs.DurationVar(&cfg.Breaker.MinBackoff, "breaker-min-backoff", shipper.DefaultBreakerMinBackoff, "wait before the open breaker's first probe; doubled after each failed probe")
	fs.DurationVar(&cfg.Breaker.MaxBackoff, "breaker-max-backoff", shipper.DefaultBreakerMaxBackoff, "longest wait between the open breaker's probes")
	fs.IntVar(&cfg.MaxThrottle, "max-throttle-level", shipper.DefaultMaxLevel, "highest throttle level under load (level n: the kernel keeps 1 event in 2^n, low-priority metrics ship every 2^n intervals, flushes every 2^n intervals); 0 never throttles")
	fs.IntVar(&cfg.MaxSeries, "max-series", 0, "cardinality budget: most distinct series in all (0: the shipper's default); past it, new tag values go to an overflow series")
	fs.Uint32Var(&cfg.RingSize, "ring-size", bpf.DefaultRingSize, "bytes in each kernel ring buffer: a power of two, a multiple of the page size (default 4 MiB with --syscalls-by-process)")
	fs.BoolVar(&cfg.RingShards, "ring-shards", false, "give each CPU a kernel ring of --ring-size bytes that its programs write to, so that CPUs never contend on one ring (costs twice --ring-size of memory per CPU)")
	fs.Uint64Var(&cfg.WakeupBytes, "wakeup-bytes", 0, "queued bytes past which the kernel wakes the reader, at most once a jiffy on each CPU (0: a quarter of --ring-size)")
	fs.DurationVar(&cfg.Poll, "poll", DefaultPoll, "how often the reader drains the kernel ring without a wakeup (it also drains it before every flush, and when the kernel wakes it past --wakeup-bytes)")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	fs.StringVar(&cfg.AdminSocket, "admin-socket", admin.DefaultSocket, "Unix socket where the daemon answers --status, --drops and --health (root only)")
	fs.Float64Var(&cfg.MaxKernelDropRatio, "health-max-kernel-drops", 0.05, "share of kernel records lost to a full ring (or full map), in one interval, above which the daemon is unhealthy")
	fs.BoolVar(&cfg.KeepCaps, "keep-capabilities", false, "keep every capability after start-up instead of only CAP_BPF and CAP_NET_ADMIN")
	fs.BoolVar(&cfg.Query.Status, "status", false, "print the running daemon's status and exit")
	fs.BoolVar(&cfg.Query.Drops, "drops", false, "print the running daemon's drop ledger and exit")
	fs.BoolVar(&cfg.Query.Health, "health", false, "exit 0 if the running daemon is healthy, 1 with the reason if not")
	fs.BoolVar(&cfg.Query.JSON, "json", false, "with --status, --drops or --health: print JSON")
	fs.BoolVar(&cfg.Query.Watch, "watch", false, "with --status or --drops: refresh every second until interrupted")
	fs.Usage = func() { writeUsage(stderr, fs) }

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) { // pflag printed the usage
			return cfg, errHelp
		}
		return cfg, &UsageError{err}
	}
	if fs.NArg() > 0 {
		return cfg, usagef("unexpected argument %q: bpfstatd takes only flags", fs.Arg(0))
	}
	if err := applyEnv(fs, getenv); err != nil {
		return cfg, err
	}
	for _, t := range tags {
		cfg.Tags = append(cfg.Tags, strings.Split(t, ",")...)
	}
	if cfg.SyscallsByProcess && !fs.Changed("ring-size") {
		cfg.RingSize = ByProcessRingSize
	}
	var err error
	if cfg.Output, err = ParseOutput(output); err != nil {
		return cfg, &UsageError{fmt.Errorf("invalid --output: %w", err)}
	}
	if cfg.Dialect, err = shipper.ParseDialect(dialect); err != nil {
		return cfg, &UsageError{fmt.Errorf("invalid --dialect: %w", err)}
	}
	if cfg.Queue.Policy, err = shipper.ParseQueuePolicy(policy); err != nil {
		return cfg, &UsageError{fmt.Errorf("invalid --drop-policy: %w", err)}
	}
	if err := cfg.validate(); err != nil || cfg.Query.any() {
		return cfg, err
	}
	if hostTag {
		cfg.Tags = append(cfg.Tags, "host:"+string(shipper.AppendTagValue(nil, []byte(hostName(getenv)))))
	}
	return cfg, nil
}

// applyEnv sets each flag not given on the command line from its
// environment variable, if set.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(name)
		if err != nil || f.Changed || v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = usagef("invalid %s=%q (for --%s): %w", name, v, f.Name, serr)
		}
	})
	return err
}

func (c Config) validate() error {
	switch {
	case c.FlushInterval <= 0:
		return usagef("invalid --flush-interval %v: must be positive", c.FlushInterval)
	case c.Poll <= 0:
		return usagef("invalid --poll %v: must be positive", c.Poll)
	case c.MaxPayload != 0 && (c.MaxPayload < shipper.MinPayload || c.MaxPayload > c.Output.MaxPayload()):
		return usagef("invalid --max-payload %d: must be between %d and %d for %s", c.MaxPayload, shipper.MinPayload, c.Output.MaxPayload(), c.Output)
	case c.RingSize == 0 || c.RingSize&(c.RingSize-1) != 0 || int(c.RingSize)%os.Getpagesize() != 0:
		return usagef("invalid --ring-size %d: must be a power of two multiple of the page size %d", c.RingSize, os.Getpagesize())
	case c.WakeupBytes > uint64(c.RingSize):
		return usagef("invalid --wakeup-bytes %d: must not exceed --ring-size %d", c.WakeupBytes, c.RingSize)
	}
	if err := checkCollectors(c.Collectors); err != nil {
		return usagef("invalid --collectors: %w", err)
	}
	if c.SyscallsByProcess && !slices.Contains(c.Collectors, "syscalls") {
		return usagef("--syscalls-by-process needs the syscalls collector in --collectors")
	}
	if err := (bpf.NetOptions{Include: c.Interfaces, Exclude: c.ExcludeInterfaces}).Check(); err != nil {
		return usagef("invalid --interfaces or --exclude-interfaces: %w", err)
	}
	if c.MaxSeries < 0 {
		return usagef("invalid --max-series %d: must not be negative", c.MaxSeries)
	}
	switch {
	case c.Queue.Capacity <= 0:
		return usagef("invalid --queue-size %d: must be positive", c.Queue.Capacity)
	case c.Breaker.Threshold <= 0:
		return usagef("invalid --breaker-threshold %d: must be positive", c.Breaker.Threshold)
	case c.Breaker.MinBackoff <= 0:
		return usagef("invalid --breaker-min-backoff %v: must be positive", c.Breaker.MinBackoff)
	case c.Breaker.MaxBackoff < c.Breaker.MinBackoff:
		return usagef("invalid --breaker-max-backoff %v: must not be below --breaker-min-backoff %v", c.Breaker.MaxBackoff, c.Breaker.MinBackoff)
	case c.MaxThrottle < 0 || c.MaxThrottle > shipper.MaxThrottleLevel:
		return usagef("invalid --max-throttle-level %d: must be between 0 and %d", c.MaxThrottle, shipper.MaxThrottleLevel)
	}
	for _, t := range c.Tags {
		if err := checkTag(t); err != nil {
			return usagef("invalid --tag %q: %w", t, err)
		}
	}
	if c.MaxKernelDropRatio < 0 || c.MaxKernelDropRatio > 1 {
		return usagef("invalid --health-max-kernel-drops %v: must be between 0 and 1", c.MaxKernelDropRatio)
	}
	if c.AdminSocket == "" {
		return usagef("invalid --admin-socket: empty path")
	}
	if (c.Query.JSON || c.Query.Watch) && !c.Query.any() {
		return usagef("--json and --watch go with --status, --drops or --health")
	}
	if c.Query.Watch && c.Query.Health {
		return usagef("--watch does not go with --health, which answers once for a probe")
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return usagef("invalid --log-level: %w", err)
	}
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		return usagef("invalid --log-format %q: want auto, text or json", c.LogFormat)
	}
	return nil
}

// hostName is the node's name for the host tag: $NODE_NAME, as a
// DaemonSet sets it from the downward API, or the hostname.
func hostName(getenv func(string) string) string {
	if n := getenv("NODE_NAME"); n != "" {
		return n
	}
	n, err := os.Hostname()
	if err != nil || n == "" {
		return "unknown"
	}
	return n
}

// checkTag accepts KEY:VALUE tags whose bytes cannot break the wire format.
func checkTag(t string) error {
	key, value, ok := strings.Cut(t, ":")
	if !ok || key == "" || value == "" {
		return errors.New("want KEY:VALUE")
	}
	if s := string(shipper.AppendTagValue(nil, []byte(key))); s != key {
		return fmt.Errorf("key may hold only letters, digits and _ . / -")
	}
	if s := string(shipper.AppendTagValue(nil, []byte(value))); s != value {
		return fmt.Errorf("value may hold only letters, digits and _ . / -")
	}
	return nil
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// soakConfig is what `make soak` asks of runSoak.
type soakConfig struct {
	root, bin, out    string // repository; prebuilt daemon ("" builds one); output directory
	dur, every, flush time.Duration
	rate              float64
	daemonArgs        []string // after the bench's own flags
}

// soakSample is the state of the run at one moment.
type soakSample struct {
	At         time.Duration // since the load started
	Load       bool          // taken while the generator ran
	RSS        uint64        // VmRSS from /proc
	Heap       uint64
	Goroutines int
	Level      int
	Ledgers    []kernelLedger
	UserDrops  uint64  // every user-space stage and reason
	NotRun     uint64  // events the kernel did not run the syscalls programs for
	Kernel     uint64  // syscalls named soakComm, by the kernel's count
	Received   float64 // host_syscalls_by_process{comm=soakComm} at the exporter
}

func (s *soakSample) unaccounted() int64 {
	var n int64
	for _, l := range s.Ledgers {
		n += l.Unaccounted()
	}
	return n
}

// soakRun is a finished soak: the samples, the last of them after the
// daemon's shutdown, and the totals.
type soakRun struct {
	cfg       soakConfig
	Samples   []soakSample
	Generated loadResult // the generator's own count
	Events    uint64     // syscalls named soakComm, by the kernel's count
	Received  float64    // at the exporter, after the daemon's last interval
	// Drops that can excuse a missing event, from the daemon's
	// start to its end: the by-process program's ring_full and
	// sampled_out (every comm's), the syscalls the kernel did not run
	// its programs for, and every user-space drop.
	RingFull, Sampled, NotRun, UserDrops uint64
}

// byProcessProg is the by-process syscall program's name in the ledger.
const byProcessProg = "syscall_proc"

// soakComm names the soak's generator thread, apart from `make bench`'s
// loadComm and from any other soak's, so that nothing running beside it
// adds to its count.
var soakComm = "bssoak" + strconv.Itoa(os.Getpid()%100_000)

// runSoak runs the daemon against statsd_exporter under a steady load for
// cfg.dur, sampling every cfg.every, and writes soak.csv, soak.png and
// soak.md into cfg.out. It returns the checks that failed.
func runSoak(cfg soakConfig) ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the soak loads kernel programs: run it as root")
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "bssoak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if cfg.bin == "" {
		if cfg.bin, err = buildDaemon(cfg.root, work); err != nil {
			return nil, err
		}
	}
	exp, err := startExporter(cfg.root, work)
	if err != nil {
		return nil, err
	}
	defer exp.stop()
	args := append([]string{"--dialect", "statsd_exporter", "--host-tag=false"}, cfg.daemonArgs...)
	d, err := startDaemon(cfg.bin, work, exp.output, cfg.flush, args...)
	if err != nil {
		return nil, err
	}
	defer func() {
		d.stop()
		if b, err := os.ReadFile(d.stderr); err == nil {
			_ = os.WriteFile(filepath.Join(cfg.out, "daemon.log"), []byte(nonGC(string(b))), 0o644)
		}
	}()
	counter, err := newCommCounter(soakComm)
	if err != nil {
		return nil, err
	}
	defer counter.close()

	csv, err := os.Create(filepath.Join(cfg.out, "soak.csv"))
	if err != nil {
		return nil, err
	}
	defer csv.Close()
	r := &soakRun{cfg: cfg}
	take := func(start time.Time, load bool) error {
		s, err := sampleSoak(d, exp, counter, time.Since(start), load)
		if err != nil {
			return err
		}
		if len(r.Samples) == 0 {
			fmt.Fprintln(csv, csvHead(s))
		}
		r.Samples = append(r.Samples, *s)
		fmt.Fprintln(csv, csvRow(s))
		if s.Load {
			log.Printf("soak %s: RSS %.1f MB, %d goroutines, ledger unaccounted %d, %s %d sent, %.0f received",
				s.At.Round(time.Second), mb(s.RSS), s.Goroutines, s.unaccounted(), soakComm, s.Kernel, s.Received)
		}
		return nil
	}

	log.Printf("soak: %s at %s events/s, a sample every %s, into %s", cfg.dur, Num(cfg.rate), cfg.every, cfg.out)
	done := make(chan loadResult)
	start := time.Now()
	go func() { done <- runLoadAs(soakComm, cfg.rate, cfg.dur, 1) }()
	tick := time.NewTicker(cfg.every)
	defer tick.Stop()
	if err := take(start, true); err != nil {
		return nil, err
	}
wait:
	for {
		select {
		case r.Generated = <-done:
			break wait
		case <-tick.C:
			if err := take(start, true); err != nil {
				return nil, err
			}
		}
	}

	// The last interval: let the daemon read the ledger once more, then
	// stop it (it ships what it holds) and wait for the exporter to settle.
	time.Sleep(cfg.flush + 500*time.Millisecond)
	if err := take(start, false); err != nil {
		return nil, err
	}
	d.stop()
	if r.Received, err = exp.settle(soakComm); err != nil {
		return nil, err
	}
	if r.Events, err = counter.count(); err != nil {
		return nil, err
	}
	last := &r.Samples[len(r.Samples)-1]
	for _, l := range last.Ledgers {
		if l.Program == byProcessProg {
			r.RingFull, r.Sampled = l.RingFull, l.SampledOut
		}
	}
	r.UserDrops, r.NotRun = last.UserDrops, last.NotRun

	failed := r.judge()
	if err := plotSoak(r.Samples, filepath.Join(cfg.out, "soak.png")); err != nil {
		log.Printf("soak: plot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "soak.md"), []byte(r.markdown(failed)), 0o644); err != nil {
		return failed, err
	}
	return failed, nil
}

func sampleSoak(d *daemon, exp *exporter, c *commCounter, at time.Duration, load bool) (*soakSample, error) {
	st, err := d.status()
	if err != nil {
		return nil, err
	}
	s := &soakSample{At: at, Load: load, RSS: procRSS(st.PID), Heap: st.HeapBytes, Goroutines: st.Goroutines,
		Level: st.Throttle.Level, Ledgers: st.Ledgers}
	for _, dr := range st.Drops {
		switch {
		case dr.Stage != "kernel":
			s.UserDrops += dr.Count
		case dr.Reason == "not_run" && dr.Source == "syscalls":
			s.NotRun += dr.Count
		}
	}
	if s.Kernel, err = c.count(); err != nil {
		return nil, err
	}
	if s.Received, err = exp.received(soakComm); err != nil {
		return nil, err
	}
	return s, nil
}

func csvHead(s *soakSample) string {
	h := []string{"elapsed_s", "load", "rss_mb", "heap_mb", "goroutines", "throttle_level", "user_drops", "sent", "received", "unaccounted"}
	for _, l := range s.Ledgers {
		for _, f := range []string{"seen", "emitted", "ring_full", "sampled_out", "pending", "unaccounted"} {
			h = append(h, l.Program+"_"+f)
		}
	}
	return strings.Join(h, ",")
}

func csvRow(s *soakSample) string {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	row := []string{strconv.FormatFloat(s.At.Seconds(), 'f', 1, 64), strconv.FormatBool(s.Load),
		strconv.FormatFloat(mb(s.RSS), 'f', 2, 64), strconv.FormatFloat(mb(s.Heap), 'f', 2, 64),
		strconv.Itoa(s.Goroutines), strconv.Itoa(s.Level), u(s.UserDrops), u(s.Kernel),
		strconv.FormatFloat(s.Received, 'f', 0, 64), strconv.FormatInt(s.unaccounted(), 10)}
	for _, l := range s.Ledgers {
		row = append(row, u(l.Seen), u(l.Emitted), u(l.RingFull), u(l.SampledOut), u(l.Pending), strconv.FormatInt(l.Unaccounted(), 10))
	}
	return strings.Join(row, ",")
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// exporter is a statsd_exporter built from the e2e module (the receiver
// the e2e suite runs against), on loopback ports.
type exporter struct {
	cmd         *exec.Cmd
	output, web string // the daemon's --output; HOST:PORT of /metrics
	exited      chan error
}

func startExporter(root, work string) (*exporter, error) {
	bin := filepath.Join(work, "statsd_exporter")
	build := exec.Command(goCmd(), "build", "-o", bin, "github.com/prometheus/statsd_exporter")
	build.Dir = filepath.Join(root, "e2e")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build statsd_exporter: %v: %s", err, out)
	}
	udp, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	web, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	e := &exporter{output: "udp://" + udp, web: web, exited: make(chan error, 1)}
	logf, err := os.Create(filepath.Join(work, "exporter.log"))
	if err != nil {
		return nil, err
	}
	e.cmd = exec.Command(bin, "--web.listen-address="+web, "--statsd.listen-tcp=", "--statsd.listen-udp="+udp, "--log.level=warn")
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { e.exited <- e.cmd.Wait(); logf.Close() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := e.received(soakComm); err == nil {
			return e, nil
		}
		select {
		case err := <-e.exited:
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("statsd_exporter exited at start (%v): %s", err, tail(string(b), 600))
		default:
		}
		if time.Now().After(deadline) {
			e.stop()
			return nil, fmt.Errorf("statsd_exporter did not serve %s within 10 s", web)
		}
	}
}

func freePort(network string) (string, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.LocalAddr().String(), nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// received scrapes /metrics for host_syscalls_by_process{comm}.
func (e *exporter) received(comm string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.web+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape statsd_exporter: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var sum float64
	for sc.Scan() {
		if v, ok := exporterValue(sc.Text(), "host_syscalls_by_process", comm); ok {
			sum += v
		}
	}
	return sum, sc.Err()
}

// exporterValue parses one line of the Prometheus text format, returning
// the value of metric's series labelled comm="comm".
func exporterValue(line, metric, comm string) (float64, bool) {
	rest, ok := strings.CutPrefix(line, metric+"{")
	if !ok {
		return 0, false
	}
	labels, val, ok := strings.Cut(rest, "} ")
	if !ok || !strings.Contains(","+labels+",", `,comm="`+comm+`",`) {
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.Fields(val)[0], 64)
	return v, err == nil
}

// settle scrapes until the count stops changing (the daemon's last
// interval has arrived), for at most 10 s.
func (e *exporter) settle(comm string) (float64, error) {
	prev := -1.0
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		v, err := e.received(comm)
		if err != nil || v == prev || time.Now().After(end) {
			return v, err
		}
		prev = v
	}
}

func (e *exporter) stop() { terminate(e.cmd.Process, e.exited, 5*time.Second) }

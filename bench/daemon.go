package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// status is the part of `bpfstatd --status --json` the report uses.
type status struct {
	PID        int `json:"pid"`
	Collectors []struct {
		Name         string  `json:"name"`
		Events       uint64  `json:"events"`
		EventsPerSec float64 `json:"events_per_sec"`
	} `json:"collectors"`
	Throttle struct {
		Level      int    `json:"level"`
		SampleRate uint32 `json:"sample_rate"`
	} `json:"throttle"`
	Breaker string `json:"breaker"`
	Latency struct {
		P50 string `json:"p50"`
		P99 string `json:"p99"`
		Max string `json:"max"`
	} `json:"latency"`
	RSSBytes   uint64         `json:"rss_bytes"`
	HeapBytes  uint64         `json:"heap_bytes"`
	Goroutines int            `json:"goroutines"`
	Ledgers    []kernelLedger `json:"ledgers"`
	Drops      []drop         `json:"drops"`
	Health     struct {
		Healthy bool     `json:"healthy"`
		Reasons []string `json:"reasons"`
	} `json:"health"`
}

// kernelLedger is one kernel program's counts, cumulative since start.
type kernelLedger struct {
	Program    string `json:"program"`
	Seen       uint64 `json:"seen"`
	Emitted    uint64 `json:"emitted"`
	RingFull   uint64 `json:"ring_full"`
	SampledOut uint64 `json:"sampled_out"`
	Pending    uint64 `json:"pending"`
}

// Unaccounted is what the identity seen = emitted + ring_full +
// sampled_out + pending misses: 0 for a ring-buffer program once detached.
func (l kernelLedger) Unaccounted() int64 {
	return int64(l.Seen) - int64(l.Emitted+l.RingFull+l.SampledOut+l.Pending)
}

type drop struct {
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
	Source string `json:"source"`
	Count  uint64 `json:"count"`
}

func (s *status) syscallEvents() uint64 {
	for _, c := range s.Collectors {
		if c.Name == "syscalls" {
			return c.Events
		}
	}
	return 0
}

// ledger sums drops by "stage/reason" (kernel drops only for source, if
// given).
func ledger(ds []drop) map[string]uint64 {
	m := map[string]uint64{}
	for _, d := range ds {
		k := d.Stage + "/" + d.Reason
		if d.Source != "" {
			k += "/" + d.Source
		}
		m[k] += d.Count
	}
	return m
}

// daemon is one bpfstatd process under test.
type daemon struct {
	bin, sock, dir string
	cmd            *exec.Cmd
	stderr         string
	exited         chan error
	stopOnce       sync.Once
}

// startDaemon runs bin with the by-process syscall path on, shipping to
// output, with extra flags after the others, and waits until it answers
// on its admin socket.
func startDaemon(bin, dir, output string, flush time.Duration, extra ...string) (*daemon, error) {
	d := &daemon{bin: bin, dir: dir, sock: filepath.Join(dir, "admin.sock"), stderr: filepath.Join(dir, "daemon.stderr"), exited: make(chan error, 1)}
	os.Remove(d.sock)
	errf, err := os.Create(d.stderr)
	if err != nil {
		return nil, err
	}
	args := []string{"--syscalls-by-process", "--output", output,
		"--admin-socket", d.sock, "--flush-interval", flush.String(), "--log-format", "json"}
	d.cmd = exec.Command(bin, append(args, extra...)...)
	// gctrace is how the report gets GC pauses and heap sizes: the daemon
	// does not export runtime/metrics.
	d.cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	d.cmd.Stdout = errf
	d.cmd.Stderr = errf
	if err := d.cmd.Start(); err != nil {
		errf.Close()
		return nil, err
	}
	go func() { d.exited <- d.cmd.Wait(); errf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.status1(); err == nil {
			return d, nil
		}
		select {
		case err := <-d.exited:
			b, _ := os.ReadFile(d.stderr)
			return nil, fmt.Errorf("bpfstatd exited at start (%v): %s", err, tail(string(b), 800))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("bpfstatd did not answer on %s within 60 s", d.sock)
		}
	}
}

// status queries the daemon, three times before giving up.
func (d *daemon) status() (s *status, err error) {
	for range 3 {
		if s, err = d.status1(); err == nil {
			return s, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Alive but not answering: have the Go runtime dump its goroutines.
	if d.cmd.ProcessState == nil && d.cmd.Process.Signal(syscall.SIGQUIT) == nil {
		select {
		case werr := <-d.exited:
			d.exited <- werr
		case <-time.After(5 * time.Second):
		}
		b, _ := os.ReadFile(d.stderr)
		dump := nonGC(string(b))
		_ = os.WriteFile(d.stderr+".quit", []byte(dump), 0o644)
		err = fmt.Errorf("%v; daemon stuck, SIGQUIT dump: %s", err, firstLines(dump[strings.Index(dump, "SIGQUIT")+1:], 40))
	}
	return nil, err
}

func firstLines(s string, n int) string {
	ls := strings.SplitN(s, "\n", n+1)
	return strings.Join(ls[:min(n, len(ls))], "\n")
}

func (d *daemon) status1() (*status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.bin, "--status", "--json", "--admin-socket", d.sock).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("bpfstatd --status: %v: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		select {
		case werr := <-d.exited:
			d.exited <- werr
			b, _ := os.ReadFile(d.stderr)
			err = fmt.Errorf("%v; the daemon had exited (%v): %s", err, werr, tail(nonGC(string(b)), 600))
		default:
		}
		return nil, err
	}
	var s status
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// stop sends SIGTERM (the daemon drains the ring and ships a last
// interval) and waits for the exit; it kills after 15 s.
func (d *daemon) stop() {
	d.stopOnce.Do(func() { terminate(d.cmd.Process, d.exited, 15*time.Second) })
}

// terminate sends p SIGTERM and waits for exited to be ready; it kills p
// if that takes longer than grace.
func terminate(p *os.Process, exited <-chan error, grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = p.Kill()
		<-exited
	}
}

// procCPU returns the process's user+system CPU time so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields after "(comm) ": state is f[0]; utime is field 14, f[11].
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	const clkTck = 100 // USER_HZ on every Linux architecture Go supports
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// procRSS returns VmRSS in bytes.
func procRSS(pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// gcLine matches a gctrace line: "gc 3 @1.2s 0%: 0.01+1.2+0.02 ms clock,
// ... 4->4->2 MB, 5 MB goal, ...".
var gcLine = regexp.MustCompile(`^gc \d+ @[\d.]+s \d+%: ([\d.]+)\+([\d.]+)\+([\d.]+) ms clock, .* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)

// gcStats summarises the gctrace lines of the daemon's stderr after byte
// offset from: STW pauses (sweep termination + mark termination, wall
// clock) and the heap.
type gcStats struct {
	Cycles               int
	PauseP99, PauseMax   time.Duration
	HeapMaxMB, LiveMaxMB int
}

func readGC(path string, from int64) gcStats {
	var g gcStats
	f, err := os.Open(path)
	if err != nil {
		return g
	}
	defer f.Close()
	_, _ = f.Seek(from, 0)
	var pauses []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := gcLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		a, _ := strconv.ParseFloat(m[1], 64)
		c, _ := strconv.ParseFloat(m[3], 64)
		pauses = append(pauses, math.Max(a, c)) // each is one STW pause
		pauses = append(pauses, math.Min(a, c))
		heap, _ := strconv.Atoi(m[5])
		live, _ := strconv.Atoi(m[6])
		g.HeapMaxMB = max(g.HeapMaxMB, heap)
		g.LiveMaxMB = max(g.LiveMaxMB, live)
		g.Cycles++
	}
	if len(pauses) > 0 {
		slices.Sort(pauses)
		ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
		g.PauseP99 = ms(pauses[(len(pauses)-1)*99/100])
		g.PauseMax = ms(pauses[len(pauses)-1])
	}
	return g
}

// nonGC drops the gctrace lines from the daemon's output.
func nonGC(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(line, "gc ") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

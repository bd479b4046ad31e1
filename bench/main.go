// Command bench runs bpfstatd's benchmarks and writes BENCHMARKS.md and
// PNG plots: the Go benchmarks of the module and e2e (medians of -count
// runs, with the peers each stage is compared to measured in the same
// run), the kernel cost per program from bpf's BenchmarkSyscallHooks, and
// end to end, the daemon under generated syscall load at several rates.
//
// It is what `make bench` runs (as root, from the repository):
//
//	cd bench && go run . -root .. -out ../BENCHMARKS.md
//
// BENCH_QUICK=1 (or -quick) is a smoke test: one short run of each
// benchmark and two short load points, written to
// $TMPDIR/bpfstatd-bench-quick/ so that the committed report stays.
//
// With -soak it runs the soak instead (`make soak`): the daemon against
// statsd_exporter under a steady load for -soak-duration, sampling its
// RSS, goroutines, kernel ledger and what the receiver got, into
// -soak-out; it exits 1 when a check fails (see soakRun.judge).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	var (
		root      = flag.String("root", "..", "the bpfstatd repository")
		out       = flag.String("out", "../BENCHMARKS.md", "the report to write")
		pngDir    = flag.String("png", ".", "directory of the PNG plots (linked from the report relative to it)")
		count     = flag.Int("count", 5, "runs of each Go benchmark")
		benchtime = flag.String("benchtime", "1s", "go test -benchtime")
		quick     = flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "smoke test: 1 short run each, two short load points (BENCH_QUICK=1)")
		rateList  = flag.String("rates", "10000,100000,1000000,0", "end-to-end target syscall rates, 0 for as fast as one thread goes")
		dur       = flag.Duration("duration", 10*time.Second, "load time per end-to-end rate")
		flush     = flag.Duration("flush", time.Second, "the daemon's --flush-interval")
		prof      = flag.Duration("profile", 4*time.Second, "extra load time per rate ≥ 100 k/s during which perf samples the daemon (0: none)")
		skipGo    = flag.Bool("skip-go", false, "skip the Go benchmarks")
		skipE2E   = flag.Bool("skip-e2e", false, "skip the end-to-end load runs")
		keep      = flag.Bool("keep", false, "keep the work directory (daemon logs, perf data)")
		render    = flag.Bool("render", false, "measure nothing: render the report again from bench-raw.txt and bench-run.json in -png's directory")
		soak      = flag.Bool("soak", false, "run the soak instead of the benchmarks")
		soakDur   = flag.Duration("soak-duration", 30*time.Minute, "soak: load time")
		soakRate  = flag.Float64("soak-rate", 100_000, "soak: syscalls/s of the generator")
		soakEvery = flag.Duration("soak-every", 10*time.Second, "soak: time between samples")
		soakOut   = flag.String("soak-out", "../bin/soak", "soak: directory of soak.csv, soak.png, soak.md and daemon.log")
		soakBin   = flag.String("soak-bin", "", "soak: the daemon to run (default: build one from -root)")
		soakArgs  = flag.String("soak-args", "--max-throttle-level=0", "soak: more daemon flags, space-separated (no throttling keeps the receiver's count exact)")
	)
	flag.Parse()
	if *soak {
		rootAbs, err := filepath.Abs(*root)
		if err != nil {
			log.Fatal(err)
		}
		cfg := soakConfig{root: rootAbs, bin: *soakBin, out: *soakOut, dur: *soakDur, every: *soakEvery, flush: *flush,
			rate: *soakRate, daemonArgs: strings.Fields(*soakArgs)}
		failed, err := runSoak(cfg)
		if err != nil {
			log.Fatalf("soak: %v", err)
		}
		log.Printf("soak: wrote %s", filepath.Join(cfg.out, "soak.md"))
		for _, f := range failed {
			log.Printf("soak FAILED: %s", f)
		}
		if len(failed) > 0 {
			os.Exit(1)
		}
		log.Printf("soak passed")
		return
	}
	if *quick {
		*count, *benchtime = 1, "100ms"
		*rateList, *dur, *prof = "10000,100000", 4*time.Second, 0
		// A smoke run must not overwrite the committed report.
		*pngDir = filepath.Join(os.TempDir(), "bpfstatd-bench-quick")
		*out = filepath.Join(*pngDir, "BENCHMARKS.md")
		if err := os.MkdirAll(*pngDir, 0o755); err != nil {
			log.Fatal(err)
		}
		log.Printf("BENCH_QUICK: writing %s instead", *out)
	}
	rootAbs, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	work, err := os.MkdirTemp("", "bsbench-")
	if err != nil {
		log.Fatal(err)
	}
	if *keep {
		log.Printf("work directory: %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	if *render {
		r, err := loadReport(*pngDir)
		if err != nil {
			log.Fatal(err)
		}
		if r.Machine.Dirty == nil && strings.HasSuffix(r.Machine.Commit, "-dirty") {
			r.Machine.Dirty = dirtyFiles(rootAbs)
			r.Machine.DirtyWhen = "when the report was rendered, " + time.Now().UTC().Format("15:04 UTC")
		}
		r.Plots = plots(r.Points, *pngDir, r.Flush)
		if err := os.WriteFile(*out, []byte(r.Markdown()), 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("rendered %s again", *out)
		return
	}
	started := time.Now()
	r := &report{Machine: describeMachine(rootAbs), Quick: *quick, Count: *count, Benchtime: *benchtime, Flush: *flush, Duration: *dur,
		LoadComm: loadComm}

	if !*skipGo {
		for _, dir := range []string{".", "e2e", "bench"} {
			// e2e holds the shipping pair, bpfstatd against datadog-go:
			// run it -count times once rather than once -count times, so
			// that the two alternate and the drift of a shared machine
			// falls on both sides of the ratio alike.
			runs, n := 1, *count
			if dir == "e2e" {
				runs, n = *count, 1
			}
			for range runs {
				raw, failed := goBench(filepath.Join(rootAbs, dir), n, *benchtime)
				r.Raw = append(r.Raw, raw...)
				r.Failures = append(r.Failures, failed...)
			}
		}
		samples, err := ParseBench(bytes.NewReader(r.Raw))
		if err != nil {
			log.Fatal(err)
		}
		// The lanes again with one producer, for their scaling to two.
		one, failed := goBenchRun(rootAbs, "-bench", "^BenchmarkMPSC$/^lanes$/^batch64$", "-cpu", "1", "-benchmem",
			"-benchtime", *benchtime, "-count", strconv.Itoa(*count), "./ringbuf/")
		r.Raw = append(r.Raw, one...)
		r.Failures = append(r.Failures, failed...)
		oneSamples, err := ParseBench(bytes.NewReader(one))
		if err != nil {
			log.Fatal(err)
		}
		for _, s := range oneSamples {
			s.Name += oneCPU
			samples = append(samples, s)
		}
		r.Stats = Summarize(samples)
		_ = os.WriteFile(filepath.Join(*pngDir, "bench-raw.txt"), r.Raw, 0o644)
		r.ShipProfile = goProfile(filepath.Join(rootAbs, "e2e"), work, "Ship/bpfstatd", "50x")
	}
	if !*skipE2E {
		if os.Geteuid() != 0 {
			r.E2EErr = "not run: loading the kernel programs needs root"
		} else if bin, err := buildDaemon(rootAbs, work); err != nil {
			r.E2EErr = "not run: " + err.Error()
		} else {
			var rates []float64
			for _, f := range strings.Split(*rateList, ",") {
				v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
				if err != nil {
					log.Fatalf("-rates: %v", err)
				}
				rates = append(rates, v)
			}
			profFor := func(rate float64) time.Duration {
				if rate == 0 || rate >= 100_000 {
					return *prof
				}
				return 0
			}
			for _, rate := range rates {
				r.Points = append(r.Points, runEndToEnd(bin, work, []float64{rate}, *dur, *flush, profFor(rate))...)
			}
			r.Plots = plots(r.Points, *pngDir, *flush)
		}
	}
	r.Elapsed = time.Since(started)
	if err := r.save(*pngDir); err != nil {
		log.Printf("save the run: %v", err)
	}
	if err := os.WriteFile(*out, []byte(r.Markdown()), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s in %s", *out, r.Elapsed.Round(time.Second))
}

// goProfile runs one benchmark of the module in dir under the CPU
// profiler and returns the top functions by self time, or why it could not.
func goProfile(dir, work, bench, benchtime string) string {
	prof := filepath.Join(work, "cpu.prof")
	bin := filepath.Join(work, "profiled.test")
	args := []string{"test", "-run", "^$", "-bench", "^Benchmark" + bench + "$", "-benchtime", benchtime, "-count", "1",
		"-cpuprofile", prof, "-o", bin, "."}
	log.Printf("%s: go %s", dir, strings.Join(args, " "))
	cmd := exec.Command(goCmd(), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Sprintf("no profile: go test: %v: %s", err, tail(string(out), 300))
	}
	out, err := exec.Command(goCmd(), "tool", "pprof", "-top", "-nodecount", "20", bin, prof).Output()
	if err != nil {
		return fmt.Sprintf("no profile: pprof: %v", err)
	}
	var keep []string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Type:") || strings.HasPrefix(line, "Time:") {
			continue
		}
		keep = append(keep, strings.TrimRight(line, "\n"))
	}
	return strings.Join(keep, "\n")
}

// oneCPU ends the names of benchmarks run with -cpu 1.
const oneCPU = " -cpu 1"

// goBench runs every benchmark of the module in dir, printing the output
// as it comes, and returns it with the names of failed packages.
func goBench(dir string, count int, benchtime string) ([]byte, []string) {
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return nil, nil
	}
	return goBenchRun(dir, "-bench", ".", "-benchmem", "-benchtime", benchtime, "-count", strconv.Itoa(count), "./...")
}

// goBenchRun runs go test -run '^$' with flags in dir, as goBench does.
func goBenchRun(dir string, flags ...string) ([]byte, []string) {
	args := append([]string{"test", "-run", "^$", "-timeout", "30m"}, flags...)
	log.Printf("%s: go %s", dir, strings.Join(args, " "))
	cmd := exec.Command(goCmd(), args...)
	cmd.Dir = dir
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(os.Stdout, &buf)
	cmd.Stderr = io.MultiWriter(os.Stderr, &buf)
	err := cmd.Run()
	var failed []string
	if err != nil {
		for line := range strings.Lines(buf.String()) {
			if strings.HasPrefix(line, "FAIL\t") || strings.HasPrefix(line, "--- FAIL") || strings.Contains(line, "_test.go:") && !strings.HasPrefix(line, "Benchmark") {
				failed = append(failed, strings.TrimSpace(line))
			}
		}
		if len(failed) == 0 {
			failed = append(failed, fmt.Sprintf("%s: %v", dir, err))
		}
	}
	return buf.Bytes(), failed
}

func goCmd() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

func buildDaemon(root, work string) (string, error) {
	bin := filepath.Join(work, "bpfstatd")
	cmd := exec.Command(goCmd(), "build", "-trimpath", "-o", bin, "./cmd/bpfstatd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build bpfstatd: %v: %s", err, out)
	}
	return bin, nil
}

// machine describes where the figures were measured.
type machine struct {
	CPU, Kernel, Go, Commit string
	Dirty                   []string // tracked files modified in the tree benchmarked
	DirtyWhen               string   // when Dirty was taken, if not at the start
	Cores                   int
	Date                    time.Time
}

func describeMachine(root string) machine {
	m := machine{Cores: runtime.NumCPU(), Date: time.Now().UTC(), CPU: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := exec.Command(goCmd(), "env", "GOVERSION").Output(); err == nil {
		m.Go = strings.TrimSpace(string(b))
	}
	if b, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(b))
	}
	m.Dirty = dirtyFiles(root)
	return m
}

// dirtyFiles lists the tracked files that differ from the commit.
func dirtyFiles(root string) []string {
	b, err := exec.Command("git", "-C", root, "diff", "--name-only", "HEAD").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func plots(pts []*point, dir string, flush time.Duration) []string {
	var files []string
	for _, s := range []series{
		{file: "bench-cpu.png", title: "bpfstatd CPU vs syscall rate", ylabel: "% of one core", y: func(p *point) float64 { return p.CPU }, target: 25, targetLabel: "target at 1 M/s: 25%"},
		{file: "bench-rss.png", title: "bpfstatd RSS vs syscall rate", ylabel: "MB (max VmRSS during load)", y: func(p *point) float64 { return float64(p.RSSMax) / (1 << 20) }, target: 30, targetLabel: "target: 30 MB"},
		{file: "bench-p99.png", title: "bpfstatd event-to-send latency p99 vs syscall rate", ylabel: "ms", y: func(p *point) float64 { return float64(p.P99) / 1e6 }, target: float64(flush+10*time.Millisecond) / 1e6, targetLabel: "target: flush interval + 10 ms"},
	} {
		s.file = filepath.Join(dir, s.file)
		if err := plotE2E(pts, s); err != nil {
			log.Printf("plot %s: %v", s.file, err)
			continue
		}
		files = append(files, filepath.Base(s.file))
	}
	return files
}

// save writes the run (less the raw output, saved apart) as JSON, so that
// -render can render it again.
func (r *report) save(dir string) error {
	b, err := json.MarshalIndent(r, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "bench-run.json"), b, 0o644)
}

func loadReport(dir string) (*report, error) {
	b, err := os.ReadFile(filepath.Join(dir, "bench-run.json"))
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if r.Raw, err = os.ReadFile(filepath.Join(dir, "bench-raw.txt")); err == nil {
		samples, err := ParseBench(bytes.NewReader(r.Raw))
		if err != nil {
			return nil, err
		}
		r.Stats = Summarize(samples)
	}
	return &r, nil
}

// report is everything BENCHMARKS.md shows.
type report struct {
	Machine         machine
	Quick           bool
	Count           int
	Benchtime       string
	Flush, Duration time.Duration
	Raw             []byte
	Stats           []*Stat
	Failures        []string
	Points          []*point
	E2EErr          string
	// LoadComm is the load generator's thread name in the run, which a
	// later -render, another process, cannot rebuild.
	LoadComm string
	// ShipProfile is the top of a CPU profile of bpfstatd's side of the
	// shipping benchmark, which explains its figure against datadog-go.
	ShipProfile string
	Plots       []string
	Elapsed     time.Duration
}

// programCostTable lists BenchmarkProgramCosts by program: its run time
// per run next to the empty and ring_only programs on its tracepoint, which
// split it into what entering any program costs there, the reserve and
// submit of a record, and the program's own work; and, for ring-buffer
// programs, the
// same program submitting with default wakeup flags.
func programCostTable(stats []*Stat) *Table {
	t := &Table{Head: []string{"collector", "program", "runs per op", "bpf-ns/run", "empty program", "ring_only program",
		"reserve + submit (ring_only − empty)", "own work (run − ring_only)",
		"flags 0 bpf-ns/run", "flags 0 ÷ bpfstatd", "IRQ work per op: bpfstatd, flags 0"}}
	for _, c := range programCosts(stats) {
		dash := func(v float64) string {
			if math.IsNaN(v) {
				return "–"
			}
			return Num(v)
		}
		ratio, irq := "–", "–"
		if !math.IsNaN(c.wake) {
			ratio = fmt.Sprintf("%.2f×", c.wake/c.run)
			irq = Num(c.irq) + ", " + Num(c.wakeIRQ)
		}
		t.Add(c.collector, c.program, Num(c.runs), Num(c.run)+c.spread, dash(c.empty), dash(c.ring),
			dash(c.ring-c.empty), dash(c.run-c.ring), dash(c.wake), ratio, irq)
	}
	return t
}

// opCostTable lists, per collector of BenchmarkProgramCosts, the time of
// its op with no program attached, with the collector attached, the
// difference, and the BPF run time of the collector's programs per op.
func opCostTable(stats []*Stat) *Table {
	t := &Table{Head: []string{"collector", "op, no program (ns)", "op, collector attached (ns)", "added per op (ns)", "BPF run time per op (ns)"}}
	const prefix = "ProgramCosts/"
	for _, s := range stats {
		name := strings.TrimPrefix(s.Name, prefix)
		if !strings.HasSuffix(s.Pkg, "bpf") || !strings.HasPrefix(s.Name, prefix) || strings.Contains(name, "/") {
			continue
		}
		none := Find(stats, "bpf", s.Name+"/none")
		if none == nil {
			continue
		}
		var bpfNS float64
		for _, c := range programCosts([]*Stat{s}) {
			bpfNS += c.run * c.runs
		}
		with, without := s.get("ns/op"), none.get("ns/op")
		t.Add(name, Num(without)+none.spread("ns/op"), Num(with)+s.spread("ns/op"), Num(with-without), Num(bpfNS))
	}
	return t
}

// A programCost is one program's figures from BenchmarkProgramCosts; NaN
// where its collector has no such sub-benchmark.
type programCost struct {
	collector, program, spread string
	runs, run, empty, ring     float64
	wake, irq, wakeIRQ         float64 // with flags 0; IRQ work per op
}

// programCosts collects BenchmarkProgramCosts by program.
func programCosts(stats []*Stat) []programCost {
	const prefix = "ProgramCosts/"
	var costs []programCost
	for _, s := range stats {
		if !strings.HasSuffix(s.Pkg, "bpf") || !strings.HasPrefix(s.Name, prefix) || strings.Contains(strings.TrimPrefix(s.Name, prefix), "/") {
			continue
		}
		sub := func(kind, unit string) float64 { return Find(stats, "bpf", s.Name+"/"+kind).get(unit) }
		for _, u := range s.Units {
			prog, ok := strings.CutPrefix(u, "bpf-ns/")
			if !ok {
				continue
			}
			costs = append(costs, programCost{
				collector: strings.TrimPrefix(s.Name, prefix), program: prog, spread: s.spread(u),
				runs: s.get("runs/" + prog), run: s.get(u), empty: sub("empty", u), ring: sub("ring_only", u),
				wake: sub("default_wakeup", u), irq: s.get("irq-work/op"), wakeIRQ: sub("default_wakeup", "irq-work/op"),
			})
		}
	}
	return costs
}

// subsetTable lists the benchmarks whose name starts with prefix, with the
// units given, in that order.
func subsetTable(stats []*Stat, pkg, prefix string, units []string) *Table {
	t := &Table{Head: append([]string{"benchmark", "runs"}, units...)}
	for _, s := range stats {
		if !strings.HasSuffix(s.Pkg, pkg) || !strings.HasPrefix(s.Name, prefix) {
			continue
		}
		row := []string{strings.TrimPrefix(s.Name, prefix), strconv.Itoa(s.Runs)}
		for _, u := range units {
			row = append(row, Num(s.get(u))+s.spread(u))
		}
		t.Add(row...)
	}
	return t
}

func (r *report) Markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	m := r.Machine
	w("# bpfstatd benchmarks\n\n")
	w("Generated by `make bench` (`bench/`, as root) — do not edit by hand.\n\n")
	w("| machine | |\n|---|---|\n| CPU | %s |\n| cores | %d |\n| kernel | %s |\n| Go | %s |\n| commit | %s |\n| date | %s |\n| run | Go benchmarks: -count %d -benchtime %s (e2e's BenchmarkShip: -count 1, that many times, bpfstatd and datadog-go in turn); end to end: %s per rate, --flush-interval %s; whole run %s%s |\n\n",
		m.CPU, m.Cores, m.Kernel, m.Go, m.Commit, m.Date.Format("2006-01-02 15:04 UTC"),
		r.Count, r.Benchtime, r.Duration, r.Flush, r.Elapsed.Round(time.Second), map[bool]string{true: " (**BENCH_QUICK smoke run: figures are not meaningful**)", false: ""}[r.Quick])
	if len(m.Dirty) > 0 {
		when := "at the start of the run"
		if m.DirtyWhen != "" {
			when = m.DirtyWhen
		}
		w("The tree benchmarked had uncommitted changes by other work in progress (%s): %s. The daemon and the benchmarks were built from it as it was.\n\n", when, "`"+strings.Join(m.Dirty, "`, `")+"`")
	}
	w("Figures are medians of the runs (± is the largest distance of a run from the median). This machine is shared and noisy: compare ratios measured in the same run, not figures across runs.\n\n")

	w("## Targets\n\n")
	w("%s\n", r.targets().Markdown())
	if r.ShipProfile != "" {
		w("<details><summary>CPU profile of bpfstatd's side of the shipping benchmark (e2e <code>BenchmarkShip/bpfstatd</code>, top functions by self time; the receiver's parsing runs in the same process)</summary>\n\n```\n%s\n```\n\n</details>\n\n", r.ShipProfile)
	}

	w("## Pipeline stages\n\nbpfstatd's stages against the alternative each replaces, measured in the same run. \"Ahead by\" is peer/bpfstatd for a time and bpfstatd/peer for a rate: above 1× bpfstatd is faster.\n\n")
	if len(r.Stats) == 0 {
		w("Not run.\n\n")
	} else {
		w("%s\n", PeerTable(r.Stats).Markdown())
		if Find(r.Stats, "bench", "DrainPlain/cilium-read") == nil {
			w("Drain versus cilium's plain (allocating) `Reader.Read`: no benchmark yet; the table compares with `Reader.ReadInto`, the non-allocating form.\n\n")
		}
	}

	w("## Kernel cost per program\n\nFrom `bpf`'s `BenchmarkSyscallHooks`: each syscalls program attached alone on `sys_enter`, a `getppid` loop on one thread. ns/op is one `getppid` with the program attached; added-ns/call is that minus the no-probe baseline (bpf_stats off); bpf-ns/event is the program's own run time (bpf_stats on). `by_process` is the ring-buffer program the daemon's `--syscalls-by-process` runs, which writes a record per run of identical syscalls on a CPU (submitted at a different syscall, a new jiffy, or the daemon's flush), drained by the daemon's `ringbuf.Drainer` (space handed back once per batch, edge-triggered wait); `by_process_cilium_reader` is the same program drained by cilium's `ringbuf.Reader` (space handed back per record); `by_process_each` is the same program writing a record per syscall, the cost of a loop that never repeats a syscall; `by_process_default_wakeup` is the naive stack: a record per syscall with flags 0 on every submit, drained by cilium's `Reader`, which catches up often, so that flags 0 wake it; `by_process_default_wakeup_drainer` is that program under the daemon's reader. `floor` (a program that only returns) and `ring_only` (a bare reserve and submit of a record) are assembled in the test. x-by_process is the variant's bpf-ns/event over by_process's.\n\n")
	if t := subsetTable(r.Stats, "bpf", "SyscallHooks/", []string{"ns/op", "added-ns/call", "bpf-ns/event", "ring-full/event", "irq-work/event", "x-by_process"}); len(t.Rows) > 0 {
		w("%s\n", t.Markdown())
	} else {
		w("No `BenchmarkSyscallHooks` output in this run (not root, no BTF, or the benchmark is absent).\n\n")
	}
	if t := subsetTable(r.Stats, "bpf", "NetPacket/", []string{"ns/op", "bpf-ns/packet"}); len(t.Rows) > 0 {
		w("Network collector, per packet (`BenchmarkNetPacket`):\n\n%s\n", t.Markdown())
	}
	if t := programCostTable(r.Stats); len(t.Rows) > 0 {
		w("The other collectors' programs (`BenchmarkProgramCosts`), each collector attached alone under an op that makes its events: spawning `/bin/true` (process), a loopback TCP connection and a connect to a closed port (tcp), a UDP datagram to a closed port (skb), a byte passed to another thread and back through pipes (runq). bpf-ns/run is the program's run time per run (bpf_stats on); *empty* and *ring_only* are programs assembled in the test and attached to the same tracepoints: one that only returns, and a bare reserve, zero and submit of a 48-byte record. These events come far apart, so each run starts with its code and data out of the caches: *ring_only* is the least any program writing a record per such event costs here. Together they split a program's run time: entering a program (empty), reserving and submitting a record (ring_only − empty), and the program's own work (the rest). *flags 0* is the same collector submitting every record with the kernel's default wakeup flags, drained by cilium's `Reader`: a record wakes the reader (IRQ work) when the reader has caught up, as it has between events far apart. IRQ work per op counts every CPU's, over the measured ops. The OOM program is left out (an OOM kill per op is no benchmark).\n\n%s\n", t.Markdown())
	}
	if t := opCostTable(r.Stats); len(t.Rows) > 0 {
		w("What each collector adds to the op that makes its events, against the op with no program attached (*none*), medians of the same runs, next to its programs' BPF run time per op (run time × runs per op, summed): an op takes tens to hundreds of microseconds, and its runs vary by more than the programs cost (the ± columns), so the difference says more of that noise than of the programs, whose run time is the figure to go by.\n\n%s\n", t.Markdown())
	}

	w("## End to end\n\n")
	r.endToEnd(w)

	w("## Every benchmark\n\n")
	if len(r.Stats) > 0 {
		w("%s\n", AllTable(r.Stats).Markdown())
	}
	if len(r.Failures) > 0 {
		w("Failures reported by `go test` in this run:\n\n```\n%s\n```\n\n", strings.Join(r.Failures, "\n"))
	}
	w("The raw `go test` output of this run is in `bench/bench-raw.txt` (benchstat format).\n")
	return b.String()
}

func (r *report) endToEnd(w func(string, ...any)) {
	if r.E2EErr != "" {
		w("%s\n\n", r.E2EErr)
		return
	}
	if len(r.Points) == 0 {
		w("Not run.\n\n")
		return
	}
	w("A fresh daemon per rate: `bpfstatd --syscalls-by-process --output udp://127.0.0.1:PORT --flush-interval %s` (every collector on, defaults otherwise: a 4 MiB ring (the default with --syscalls-by-process), drained before each flush, when the kernel wakes the reader past a quarter of the ring, and every 100 ms), shipping to a UDP receiver in the generator that parses every line. The load is threads named `%s` (prctl PR_SET_NAME) calling `getppid` and `getpid` in turn, so that no syscall repeats the one before and the by-process program writes a record for every one (its costliest case; a loop of one syscall would make a record per jiffy), one thread below 600 k/s and two above (one thread with the probe tops out below 1 M/s here), paced with raw `nanosleep` in ~1 ms slices (\"max\": unpaced). *generated* counts the syscalls those threads made themselves (getppid + getpid + nanosleep); *kernel count* is the kernel's own count of every syscall of threads of that name, the Go runtime's on them included (a perf counter on `raw_syscalls:sys_enter` on each CPU, filtered on the name, open from before the load until the daemon has stopped; not at \"max\", where it would slow the generator): the truth, which *missing* subtracts received from (*generated* where there is no kernel count); *received* is the sum of `host.syscalls.by_process` for `comm:%s` that reached the receiver, including the last interval the daemon ships when stopped with SIGTERM after the load. Under kernel sampling the daemon scales counts by the sampling rate, so received is then an estimate. *Unaccounted* is missing minus the ledger's ring_full and user-space drops over the run (ring_full counts every comm, so it can only excuse, not prove, a loss). Daemon CPU is utime+stime from /proc/PID/stat over the load less its first 2 s; RSS is the largest VmRSS sampled every 250 ms; heap and latency (event-to-send, one event in 100 sampled, the last 1024 samples) come from `--status --json` at the end of the load, which is also polled once a second for the throttle level. Everything else on the host that makes syscalls also goes through the by-process ring, and other work may run on the machine: *daemon saw* is every syscall event the daemon counted during the load, *background* the rate just before it. The BPF programs' own cost is charged to the generator threads, not to the daemon (see the kernel table). The health monitor raises the throttle level under pressure: level L keeps 1 kernel event in 2^L, stretches the flush interval to 2^L × %s and ships low-priority series (by_process is one) every 2^L intervals.\n\n",
		r.Flush, r.loadComm(), r.loadComm(), r.Flush)
	w("%s\n", e2eTable(r.Points).Markdown())
	for _, f := range r.Plots {
		w("![%s](bench/%s)\n", f, f)
	}
	w("\nGC, from the daemon's `GODEBUG=gctrace=1` output during the load (the daemon exports no runtime/metrics; each cycle has two stop-the-world pauses, sweep and mark termination, wall clock):\n\n%s\n", gcTable(r.Points).Markdown())
	for _, p := range r.Points {
		if p.Profile != "" {
			w("<details><summary>perf profile of the daemon at %s (self time, %s after the measured window)</summary>\n\n```\n%s\n```\n\n</details>\n\n", rateName(p.Target), "3 s", p.Profile)
		}
	}
}

// loadComm returns the load generator's thread name in the run; runs saved
// before it was recorded get this process's.
func (r *report) loadComm() string {
	if r.LoadComm != "" {
		return r.LoadComm
	}
	return loadComm
}

// targets checks issue 9's targets against this run.
func (r *report) targets() *Table {
	t := &Table{Head: []string{"target", "measured", "verdict"}}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	var at100k, at1M, top *point
	for _, p := range r.Points {
		if p.Err != "" {
			continue
		}
		switch {
		case p.Target == 100_000:
			at100k = p
		case p.Target == 1_000_000:
			at1M = p
		}
		if top == nil || p.GenRate() > top.GenRate() {
			top = p
		}
	}
	if len(r.Points) == 0 {
		t.Add("end-to-end targets", "not measured: "+r.E2EErr, "–")
	}
	if at1M != nil {
		ok := at1M.GenRate() >= 0.95e6 && at1M.CPU <= 25 && at1M.Unaccounted() == 0
		why := ""
		if at1M.GenRate() < 0.95e6 {
			why = fmt.Sprintf("; the generator reached only %s/s", Num(at1M.GenRate()))
		}
		t.Add("≥ 1 M kernel events/s at ≤ 25% of a core, no unaccounted loss",
			fmt.Sprintf("%s/s generated (daemon saw %s/s incl. background): CPU %.1f%% (%s ns per event), %d unaccounted of %d %s, %d ring_full, sampling 1 in %d%s",
				Num(at1M.GenRate()), Num(at1M.KernelRate), at1M.CPU, Num(at1M.NSPerEvent()), at1M.Unaccounted(), at1M.Truth(), at1M.truthName(), at1M.RingFull, max(at1M.SampleRate, 1), why), verdict(ok))
	} else if len(r.Points) > 0 {
		t.Add("≥ 1 M kernel events/s at ≤ 25% of a core", "not run in this configuration", "–")
	}
	if at100k != nil {
		t.Add("100 k events/s at ≤ 3% of a core", fmt.Sprintf("%.1f%% while the daemon saw %s/s incl. background (%s ns of daemon CPU per event: %.1f%% for 100 k/s alone at that cost)",
			at100k.CPU, Num(at100k.KernelRate), Num(at100k.NSPerEvent()), at100k.NSPerEvent()*100e3/1e7), verdict(at100k.CPU <= 3))
	}
	if len(r.Points) > 0 {
		var worst time.Duration
		bogus := false
		var rssMax, heapMax uint64
		var liveMax, gcHeapMax int
		var gcP99 time.Duration
		gcSeen := false
		for _, p := range r.Points {
			if p.Err != "" {
				continue
			}
			worst = max(worst, p.P99)
			bogus = bogus || p.latencyBogus()
			rssMax = max(rssMax, p.RSSMax)
			heapMax = max(heapMax, p.Heap)
			liveMax = max(liveMax, p.GC.LiveMaxMB)
			gcHeapMax = max(gcHeapMax, p.GC.HeapMaxMB)
			if p.GC.Cycles > 0 {
				gcSeen = true
				gcP99 = max(gcP99, p.GC.PauseP99)
			}
		}
		limit := r.Flush + 10*time.Millisecond
		if bogus {
			t.Add("latency p99 ≤ flush interval + 10 ms ("+limit.String()+")", "p99 reported as "+worst.Round(time.Second).String()+", about the machine's uptime: the daemon feeds every record's TimeNS to its latency sampler (internal/daemon/pipeline.go), and the syscall program sets TimeNS on 1 record in 64 (0 otherwise, bpf/syscalls.go), so the samples measure now − 0", "**not measurable** (daemon bug)")
		} else {
			var per []string
			for _, p := range r.Points {
				if p.Err == "" {
					per = append(per, fmt.Sprintf("%s: %s at throttle level ≤ %d", rateName(p.Target), p.P99.Round(time.Millisecond), max(p.MaxLevel, p.Throttle)))
				}
			}
			t.Add("latency p99 ≤ flush interval + 10 ms ("+limit.String()+")", "worst p99 over the rates: "+worst.Round(time.Millisecond).String()+" ("+strings.Join(per, "; ")+"; throttle level L stretches the flush interval to 2^L × "+r.Flush.String()+")", verdict(worst <= limit))
		}
		t.Add("steady RSS ≤ 30 MB", fmt.Sprintf("largest VmRSS: %.1f MB", float64(rssMax)/(1<<20)), verdict(rssMax <= 30<<20))
		t.Add("Go heap ≤ 8 MB", fmt.Sprintf("largest heap_bytes from --status: %.1f MB; %s", float64(heapMax)/(1<<20), map[bool]string{true: fmt.Sprintf("gctrace: live heap after GC ≤ %d MB, heap at the end of a GC cycle (live + garbage) ≤ %d MB", liveMax, gcHeapMax), false: "no GC cycle during the loads"}[gcSeen]),
			map[bool]string{true: "met", false: "**missed**"}[heapMax <= 8<<20 && liveMax <= 8]+map[bool]string{true: " (peak heap incl. garbage over 8 MB)", false: ""}[gcHeapMax > 8])
		if gcSeen {
			t.Add("GC pause p99 ≤ 1 ms", "worst per-rate p99 of STW pauses (gctrace, wall clock): "+gcP99.String(), verdict(gcP99 <= time.Millisecond))
		} else {
			t.Add("GC pause p99 ≤ 1 ms", "no GC cycle during the loads (the daemon exports no runtime/metrics)", "met (no GC)")
		}
	}
	if ours, peer := Find(r.Stats, "e2e", "Ship/bpfstatd"), Find(r.Stats, "e2e", "Ship/datadog-go"); ours != nil && peer != nil {
		a, b := ours.get("updates/s"), peer.get("updates/s")
		ratio := a / b
		why := ""
		if r.ShipProfile != "" {
			why = "; CPU profile of bpfstatd's side below the table"
		}
		t.Add("shipping ≥ 2× datadog-go's updates/s (e2e BenchmarkShip)", fmt.Sprintf("%s updates/s against %s: %.2f×%s", Num(a), Num(b), ratio, why), verdict(ratio >= 2 && !math.IsNaN(ratio)))
	}
	if s := Find(r.Stats, "bpf", "SyscallHooks/by_process"); s != nil {
		v := s.get("bpf-ns/event")
		t.Add("by_process BPF run time ≤ 200 ns/event (bpf/overhead_test.go)", Num(v)+" ns"+kernelSplit(r.Stats, v), verdict(v <= 200))
		if x := Find(r.Stats, "bpf", "SyscallHooks/by_process_default_wakeup"); x != nil {
			naive := x.get("bpf-ns/event")
			ratio := naive / v
			each := ""
			if e := Find(r.Stats, "bpf", "SyscallHooks/by_process_each"); e != nil {
				each = fmt.Sprintf("; with a record per syscall and the daemon's wakeup policy (by_process_each) %.2f×", naive/e.get("bpf-ns/event"))
			}
			t.Add("naive stack (a record per syscall, flags 0, cilium's Reader) ≥ 5× the by_process cost (bpf/overhead_test.go)",
				fmt.Sprintf("%.2f× (%s ns against %s ns; IRQ work per event %s%s)", ratio, Num(naive), Num(v), Num(x.get("irq-work/event")), each),
				verdict(ratio >= 5 && !math.IsNaN(ratio)))
		}
	}
	ringProgramTargets(t, programCosts(r.Stats), verdict)
	return t
}

// ringProgramTargets adds the run-time and wakeup targets of the ring-buffer
// programs that BenchmarkProgramCosts measured against default wakeup flags
// (process and tcp), with the floors that explain their run time.
func ringProgramTargets(t *Table, costs []programCost, verdict func(bool) string) {
	var runs, ratios, irqs, collectors []string
	worst, least := 0.0, math.Inf(1)
	ring, empty := span{}, span{}
	for _, c := range costs {
		if math.IsNaN(c.wake) {
			continue
		}
		if !slices.Contains(collectors, c.collector) {
			collectors = append(collectors, c.collector)
			irqs = append(irqs, fmt.Sprintf("%s %s against %s", c.collector, Num(c.wakeIRQ), Num(c.irq)))
		}
		runs = append(runs, c.program+" "+Num(c.run))
		ratios = append(ratios, fmt.Sprintf("%s %.2f× (%s ns)", c.program, c.wake/c.run, Num(c.wake)))
		worst, least = max(worst, c.run), min(least, c.wake/c.run)
		ring.add(c.ring)
		empty.add(c.empty)
	}
	if len(runs) == 0 {
		return
	}
	which := strings.Join(collectors, ", ")
	t.Add("other ring-buffer programs ("+which+") ≤ 200 ns/event (bpf/cost_test.go)",
		fmt.Sprintf("%s ns. On the same tracepoints a bare reserve and submit (ring_only) costs %s ns and a program that only returns (empty) %s ns: these events come far apart, so every run starts with cold caches (each program's split is under Kernel cost per program)",
			strings.Join(runs, ", "), ring, empty),
		verdict(worst <= 200))
	t.Add("other ring-buffer programs ("+which+") ≥ 5× less than submitting with flags 0 (cilium's Reader; bpf/cost_test.go)",
		fmt.Sprintf("%s. Flags 0 wake the reader (IRQ work) only when it has caught up: IRQ work per op with flags 0 against bpfstatd's policy: %s",
			strings.Join(ratios, ", "), strings.Join(irqs, "; ")),
		verdict(least >= 5))
}

// A span is the range of some figures, printed as "lo–hi".
type span struct{ lo, hi float64 }

// add widens the span to v, unless v is NaN.
func (s *span) add(v float64) {
	switch {
	case math.IsNaN(v):
	case s.lo == 0 && s.hi == 0:
		s.lo, s.hi = v, v
	default:
		s.lo, s.hi = min(s.lo, v), max(s.hi, v)
	}
}

func (s span) String() string {
	if s.lo == s.hi {
		return Num(s.lo)
	}
	return Num(s.lo) + "–" + Num(s.hi)
}

// kernelSplit explains a by_process cost of v ns per event with the
// programs measured in the same run: what the run-time statistics add to a
// program that does nothing, a bare reserve and submit, and the program
// writing a record per syscall. It is "" when they did not run.
func kernelSplit(stats []*Stat, v float64) string {
	floor, ring, each := Find(stats, "bpf", "SyscallHooks/floor"), Find(stats, "bpf", "SyscallHooks/ring_only"), Find(stats, "bpf", "SyscallHooks/by_process_each")
	if floor == nil || ring == nil || each == nil {
		return ""
	}
	f := floor.get("bpf-ns/event")
	return fmt.Sprintf(", of which %s ns the run-time statistics add to any program (floor), %s ns the program's own work; a record per syscall would cost %s ns (by_process_each), a bare reserve and submit %s ns (ring_only)",
		Num(f), Num(v-f), Num(each.get("bpf-ns/event")), Num(ring.get("bpf-ns/event")))
}

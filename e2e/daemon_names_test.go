package e2e

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Metric families bpfstatd may make appear at statsd_exporter with
// --collectors process, and the labels each may carry (--host-tag=false).
var processFamilies = map[string][]string{
	promExec: {"comm"}, promExit: {"comm", "failed"}, "host_process_fork": {"comm"},
	"bpfstatd_kernel_seen": nil, promRingFull: nil, promSampledOut: nil, "bpfstatd_drain_records": nil,
	promDecodeErrors: nil, promLinesDropped: nil, "bpfstatd_throttle_level": nil,
	"bpfstatd_breaker_open": nil, "bpfstatd_drops": {"stage", "reason"},
}

// exporterOwn are the families statsd_exporter exposes about itself.
func exporterOwn(name string) bool {
	for _, p := range []string{"statsd_exporter_", "statsd_metric_mapper_", "go_", "process_", "promhttp_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

var labelValueRE = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

// unexpected lists every family, label and label value at the exporter that
// bpfstatd did not mean to send.
func unexpected(f families) []string {
	var bad []string
	for name, mf := range f {
		if exporterOwn(name) {
			continue
		}
		keys, ok := processFamilies[name]
		if !ok {
			bad = append(bad, "family "+name)
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				found := false
				for _, k := range keys {
					found = found || k == l.GetName()
				}
				if !found || !labelValueRE.MatchString(l.GetValue()) {
					bad = append(bad, fmt.Sprintf("%s{%s=%q}", name, l.GetName(), l.GetValue()))
				}
			}
		}
	}
	return bad
}

// TestDaemonHostileProcessNames execs programs whose names hold newlines,
// StatsD field and tag separators, spaces, invalid UTF-8, and 15 bytes or
// more: statsd_exporter sees only the metrics, labels and values meant,
// each name sanitised as the shipper documents, with exact counts, and
// counts no malformed input.
func TestDaemonHostileProcessNames(t *testing.T) {
	requireE2E(t)
	exp := startExporter(t, "")
	d := startDaemon(t, exp.output(), "--collectors", "process", "--flush-interval", "200ms")
	r := uniqueName("")[:4]
	names := []string{
		"x" + r + "\nevil:1|c",    // a second line
		"x" + r + "|#evil:1",      // a tag field
		"x" + r + "|@0.01",        // a sample rate
		"x" + r + ",bad:tag",      // a second tag
		"x" + r + ":5|c",          // a second value
		"@" + r + " sp ce#",       // spaces and a comment
		"\xff\xfe" + r + "\xc3(",  // invalid UTF-8
		"9" + r + "-digit.first",  // starts with a digit, 15 bytes
		"l" + r + "0123456789xyz", // 18 bytes: the kernel keeps 15
		"u" + r + "\u00e9t\u00e9", // valid UTF-8, not ASCII
		"\t" + r + "\r\v\f",       // control bytes
	}
	dir := t.TempDir()
	const runs = 3
	want := map[string]float64{}
	for _, n := range names {
		path := helperProgram(t, dir, n)
		if err := runMany(path, runs, 1); err != nil {
			t.Fatalf("exec %q: %v", n, err)
		}
		comm := n[:min(len(n), 15)]
		_, v := wantTag("comm", comm)
		want[v] += runs
	}
	f, ok := exp.waitFor(t, 10*time.Second, func(f families) bool {
		for v, n := range want {
			if f.sum(promExec, "comm", v) < n || f.sum(promExit, "comm", v) < n {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond) // anything unexpected has time to arrive too
	f = exp.mustScrape(t)
	l := d.drops(t)
	if !ok {
		t.Errorf("not every name arrived within 10s")
	}
	for v, n := range want {
		exec, exit := f.sum(promExec, "comm", v), f.sum(promExit, "comm", v, "failed", "false")
		if exec != n-float64(l.count("kernel", "ring_full", "exec")) || exit != n-float64(l.count("kernel", "ring_full", "exit")) {
			t.Errorf("comm %q: %v execs, %v exits at the exporter; want %v each (ledger: %s)", v, exec, exit, n, l.nonZero())
		}
	}
	if lost := l.userLost() + l.count("kernel", "", ""); lost != 0 {
		t.Errorf("ledger counts losses on an idle host: %s", l.nonZero())
	}
	if bad := unexpected(f); len(bad) != 0 {
		t.Errorf("exporter holds what bpfstatd did not mean to send: %v", bad)
	}
	if bad := exporterErrors(f); len(bad) != 0 {
		t.Errorf("statsd_exporter counted malformed input: %v", bad)
	}
	t.Logf("%d hostile names, %d runs each, arrived as %d comm values; exporter lines %v, samples %v, tag errors %v",
		len(names), runs, len(want), f.sum("statsd_exporter_lines_total"), f.sum("statsd_exporter_samples_total"),
		f.sum("statsd_exporter_tag_errors_total"))
}

// TestDaemonCardinalityAttack execs 10,000 distinct program names in a few
// seconds against --max-series 200: the daemon's memory stays bounded, the
// exporter never sees more series than the budget, the overflow series
// carries the rest, and the totals are exact: every exec, exit and fork the
// kernel saw arrives under some name.
func TestDaemonCardinalityAttack(t *testing.T) {
	requireE2E(t)
	const distinct, budget = 10000, 200
	exp := startExporter(t, "")
	// A flush interval of 1 s: series idle for 60 intervals are evicted
	// and their budget reused, and the exporter keeps every series it ever
	// saw; none may be evicted while the test runs.
	d := startDaemon(t, exp.output(), "--collectors", "process", "--flush-interval", "1s",
		"--max-series", fmt.Sprint(budget))
	dir := t.TempDir()
	src := helperProgram(t, dir, "src")
	prefix := "c" + uniqueName("")[:4]
	paths := make([]string, distinct)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("%s%05d", prefix, i))
		if err := os.Link(src, paths[i]); err != nil {
			t.Fatal(err)
		}
	}
	rssBefore := d.rss(t)
	start := time.Now()
	work := make(chan string)
	errc := make(chan error, 4)
	for range 4 {
		go func() {
			for p := range work {
				if err := runMany(p, 1, 1); err != nil {
					errc <- err
					for range work {
					}
					return
				}
			}
			errc <- nil
		}()
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	time.Sleep(1500 * time.Millisecond) // an interval or more after the last exec
	rssAfter, st := d.rss(t), d.status(t)
	l := d.drops(t)
	if took, err := d.terminate(t, 5*time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v (after %v)", err, took)
	}
	// The final flush has shipped everything: wait until the exporter
	// shows it all, and stops changing.
	var f families
	var prev float64 = -1
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		f = exp.mustScrape(t)
		if cur := f.sum("bpfstatd_drain_records"); cur == prev {
			break
		} else {
			prev = cur
		}
	}

	ours, named := 0.0, 0
	for v, n := range f.labelValues(promExec, "comm") {
		if strings.HasPrefix(v, prefix) {
			named++
			ours += n
			if n != 1 {
				t.Errorf("comm %s: %v execs, want 1", v, n)
			}
		}
	}
	overflow := f.sum(promExec, "comm", "bpfstatd_overflow")
	series := len(f.labelValues(promExec, "comm")) + len(f.labelValues(promExit, "comm")) + len(f.labelValues("host_process_fork", "comm"))
	// Every value shipped, under any name, adds up to what the kernel saw.
	var shipped float64
	for _, m := range []string{promExec, promExit, "host_process_fork"} {
		shipped += f.sum(m)
	}
	seen, records, sampled := f.sum("bpfstatd_kernel_seen"), f.sum("bpfstatd_drain_records"), f.sum(promSampledOut)
	t.Logf("%d execs of distinct names in %v (%.0f/s); RSS %.1f -> %.1f MiB; heap %.1f MiB; throttle level %d",
		distinct, took.Round(time.Millisecond), distinct/took.Seconds(), mib(rssBefore), mib(rssAfter), mib(st.HeapBytes), st.Throttle.Level)
	t.Logf("exporter: %d of our names with their own series (%v execs), overflow %v execs, %d process series in all; "+
		"kernel seen %v, records %v, sampled out %v, shipped values %v; ledger %s",
		named, ours, overflow, series, seen, records, sampled, shipped, l.nonZero())

	if ours+overflow < distinct {
		t.Errorf("our names %v + overflow %v < %d execs", ours, overflow, distinct)
	}
	if series > budget+3 { // each metric's overflow series may come on top
		t.Errorf("%d process series at the exporter with --max-series %d", series, budget)
	}
	if lost := selfLost(f); lost != 0 {
		t.Errorf("the daemon reports %v lost", lost)
	}
	if sampled == 0 && (shipped != records || records != seen) {
		t.Errorf("shipped values %v, records %v, kernel seen %v: want all equal", shipped, records, seen)
	}
	if sampled != 0 && math.Abs(shipped-seen) > 0.01*seen {
		t.Errorf("shipped values %v, kernel seen %v with %v sampled out: want within 1%%", shipped, seen, sampled)
	}
	if rssAfter > rssBefore+16<<20 {
		t.Errorf("RSS grew from %.1f to %.1f MiB with %d series allowed", mib(rssBefore), mib(rssAfter), budget)
	}
	if bad := exporterErrors(f); len(bad) != 0 {
		t.Errorf("statsd_exporter counted malformed input: %v", bad)
	}
}

package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// sample is real `go test -bench` output, trimmed, with a log line and a
// failure mixed in as go test prints them.
const sample = `goos: linux
goarch: amd64
pkg: github.com/bpfstatd/bpfstatd/ringbuf
cpu: AMD EPYC
BenchmarkHandoff/ring/single-2            	54935028	        24.95 ns/op	  40081898 items/s	       0 B/op	       0 allocs/op
BenchmarkHandoff/ring/single-2            	50000000	        26.95 ns/op	  37081898 items/s	       0 B/op	       0 allocs/op
BenchmarkHandoff/ring/single-2            	50000000	        22.00 ns/op	  45000000 items/s	       0 B/op	       0 allocs/op
BenchmarkHandoff/chan/single-2            	14399320	        81.25 ns/op	  12308029 items/s	       0 B/op	       0 allocs/op
BenchmarkDrain/backlog-2         	     364	   3734094 ns/op	        28.55 ns/record	  35027732 records/s	       373.9 wake-µs	      18 B/op	       0 allocs/op
BenchmarkDrain/backlog-readinto-2         	     248	   4555435 ns/op	        34.77 ns/record	  28758616 records/s	       0 B/op	       0 allocs/op
PASS
ok  	github.com/bpfstatd/bpfstatd/ringbuf	18.089s
pkg: github.com/bpfstatd/bpfstatd/bpf
BenchmarkSyscallHooks/by_process-2  	 1000000	      1663 ns/op	      1251 added-ns/call	       274.4 bpf-ns/event	         0.04860 irq-work/event	         0 ring-full/event	       0 B/op	       0 allocs/op
--- FAIL: BenchmarkSyscallHooks
    overhead_test.go:98: by_process costs 274 ns per event, want at most 200
FAIL
`

func TestParseAndRender(t *testing.T) {
	samples, err := ParseBench(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 7 {
		t.Fatalf("parsed %d samples, want 7", len(samples))
	}
	stats := Summarize(samples)
	ring := Find(stats, "ringbuf", "Handoff/ring/single")
	if ring == nil || ring.Runs != 3 {
		t.Fatalf("Handoff/ring/single: %+v", ring)
	}
	if got := ring.get("ns/op"); got != 24.95 {
		t.Errorf("median ns/op = %v, want 24.95", got)
	}
	if got := ring.get("items/s"); got != 40081898 {
		t.Errorf("median items/s = %v, want 40081898", got)
	}
	if s := Find(stats, "bpf", "SyscallHooks/by_process"); s == nil || s.get("bpf-ns/event") != 274.4 {
		t.Errorf("SyscallHooks/by_process: %+v", s)
	}

	peers := PeerTable(stats).Markdown()
	for _, want := range []string{
		"| hand-off, 1 item per push | Handoff/ring/single | 24.9 | 0 | 40.1 M | Handoff/chan/single | 81.2 |",
		"3.26×", // 81.25 / 24.95
		"| drain a kernel-ring backlog | Drain/backlog |",
		"1.22×", // 35.0 M / 28.8 M records/s
	} {
		if !strings.Contains(peers, want) {
			t.Errorf("peer table lacks %q:\n%s", want, peers)
		}
	}
	if strings.Contains(peers, "datadog") {
		t.Errorf("peer table has a row whose benchmarks did not run:\n%s", peers)
	}
	all := AllTable(stats).Markdown()
	if !strings.Contains(all, "| ringbuf | Handoff/ring/single | 3 | 24.9 ±12% | 0 | 0 | 40.1 M items/s |") {
		t.Errorf("table of every benchmark:\n%s", all)
	}
	if lines := strings.Count(all, "\n"); lines != 2+5 {
		t.Errorf("table of every benchmark has %d lines, want 7:\n%s", lines, all)
	}
}

func TestLoadCount(t *testing.T) {
	for line, want := range map[string]uint64{
		"host.syscalls.by_process:1200|c|#comm:" + loadComm + ",host:x": 1200,
		"host.syscalls.by_process:7|c|#host:x,comm:" + loadComm:         7,
		"host.syscalls.by_process:7|c|#comm:" + loadComm + "2":          0,
		"host.syscalls.by_process:7|c|#comm:bsload":                     0, // another bench's
		"host.syscalls:7|c|#comm:" + loadComm:                           0,
	} {
		got, _ := loadCount([]byte(line))
		if got != want {
			t.Errorf("loadCount(%q) = %d, want %d", line, got, want)
		}
	}
}

func TestReadGC(t *testing.T) {
	path := t.TempDir() + "/stderr"
	const lines = "gc 1 @0.034s 5%: 0.67+14+3.9 ms clock, 1.3+0/1.0/2.7+7.8 ms cpu, 3->4->2 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		`{"msg":"bpfstatd started"}` + "\n" +
		"gc 2 @0.171s 2%: 2.0+5.0+0.010 ms clock, 4.1+0.015/4.2/0.16+0.021 ms cpu, 5->6->0 MB, 6 MB goal, 0 MB stacks, 0 MB globals, 2 P\n"
	if err := writeFile(path, lines); err != nil {
		t.Fatal(err)
	}
	g := readGC(path, 0)
	if g.Cycles != 2 || g.HeapMaxMB != 6 || g.LiveMaxMB != 2 || g.PauseMax.String() != "3.9ms" {
		t.Errorf("readGC = %+v", g)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

func TestReceiverSocketDrops(t *testing.T) {
	r, err := newReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if n, err := r.socketDrops(); err != nil || n != 0 {
		t.Errorf("socketDrops of a fresh receiver: %d, %v", n, err)
	}
}

func TestOverflowCount(t *testing.T) {
	line := []byte("host.syscalls.by_process:42|c|#comm:bpfstatd_overflow,host:x")
	if v, ok := byProcessCount(line, overflowTag); !ok || v != 42 {
		t.Errorf("overflow count %d %v, want 42", v, ok)
	}
	if _, ok := loadCount(line); ok {
		t.Error("the overflow series counted as the load's comm")
	}
}

func TestProgramCostTable(t *testing.T) {
	const out = `pkg: github.com/bpfstatd/bpfstatd/bpf
BenchmarkProgramCosts/process-2         	     200	   1112580 ns/op	       597.1 bpf-ns/exec	       680.0 bpf-ns/exit	         0 irq-work/op	         1.000 runs/exec	         1.000 runs/exit
BenchmarkProgramCosts/process/default_wakeup-2         	     200	   1212580 ns/op	       5971 bpf-ns/exec	       8160 bpf-ns/exit	         2.000 irq-work/op	         1.000 runs/exec	         1.000 runs/exit
BenchmarkProgramCosts/process/none-2   	     200	    1102580 ns/op
BenchmarkProgramCosts/process/empty-2   	     200	    986279 ns/op	        81.83 bpf-ns/exec	        88.08 bpf-ns/exit	         1.000 runs/exec	         1.000 runs/exit
BenchmarkProgramCosts/process/ring_only-2         	     200	    958106 ns/op	       342.1 bpf-ns/exec	       430.9 bpf-ns/exit	         1.000 runs/exec	         1.000 runs/exit
BenchmarkProgramCosts/runq-2                      	     200	     52893 ns/op	       359.5 bpf-ns/runq_switch	         4.505 runs/runq_switch
`
	samples, err := ParseBench(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	stats := Summarize(samples)
	got := programCostTable(stats).Markdown()
	for _, want := range []string{
		"| process | exec | 1.00 | 597 | 81.8 | 342 | 260 | 255 | 5971 | 10.00× | 0, 2.00 |",
		"| process | exit | 1.00 | 680 | 88.1 | 431 | 343 | 249 | 8160 | 12.00× | 0, 2.00 |",
		"| runq | runq_switch | 4.50 | 360 | – | – | – | – | – | – | – |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no row %q in\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 2+3 {
		t.Errorf("%d lines, want 5:\n%s", n, got)
	}

	if got, want := opCostTable(stats).Markdown(), "| process | 1.10 M | 1.11 M | 10.0 k | 1277 |"; !strings.Contains(got, want) || strings.Contains(got, "runq") {
		t.Errorf("op cost table: want the row %q and no runq (no none run):\n%s", want, got)
	}

	targets := &Table{Head: []string{"target", "measured", "verdict"}}
	ringProgramTargets(targets, programCosts(stats), func(ok bool) string { return map[bool]string{true: "met", false: "missed"}[ok] })
	md := targets.Markdown()
	for _, want := range []string{
		"| other ring-buffer programs (process) ≤ 200 ns/event (bpf/cost_test.go) | exec 597, exit 680 ns. On the same tracepoints a bare reserve and submit (ring_only) costs 342–431 ns and a program that only returns (empty) 81.8–88.1 ns",
		"| missed |",
		"| other ring-buffer programs (process) ≥ 5× less than submitting with flags 0 (cilium's Reader; bpf/cost_test.go) | exec 10.00× (5971 ns), exit 12.00× (8160 ns).",
		"process 2.00 against 0 | met |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in\n%s", want, md)
		}
	}
}

func TestPointTruth(t *testing.T) {
	p := &point{Load: loadResult{Calls: 100, Sleeps: 10, Elapsed: time.Second}, Kernel: 115, Received: 112, RingFull: 2}
	if p.Truth() != 115 || p.Missing() != 3 || p.Unaccounted() != 1 {
		t.Errorf("with a kernel count: truth %d, missing %d, unaccounted %d; want 115, 3, 1", p.Truth(), p.Missing(), p.Unaccounted())
	}
	row := e2eTable([]*point{p}).Markdown()
	if !strings.Contains(row, "| 110 | 115 | 112 | 3 (2.61%) |") {
		t.Errorf("no generated, kernel count, received and missing in\n%s", row)
	}
	p.KernelErr = "no tracefs"
	if p.Truth() != 110 || p.Missing() != -2 || p.Unaccounted() != 0 {
		t.Errorf("without: truth %d, missing %d, unaccounted %d; want 110, -2, 0", p.Truth(), p.Missing(), p.Unaccounted())
	}
	if row := e2eTable([]*point{p}).Markdown(); !strings.Contains(row, "| 110 | none: no tracefs | 112 |") {
		t.Errorf("no missing kernel count in\n%s", row)
	}
}

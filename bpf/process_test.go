package bpf_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// uniqueCopy copies the program at src to a file with a name no other
// process uses, so the test can tell its own processes from the host's.
func uniqueCopy(tb testing.TB, src string) (path, name string) {
	tb.Helper()
	var b [4]byte
	rand.Read(b[:])
	name = "bpfst-" + hex.EncodeToString(b[:]) // 14 bytes: under TASK_COMM_LEN
	data, err := os.ReadFile(src)
	if err != nil {
		kerneltest.Unavailable(tb, "no "+src+" to run: "+err.Error())
	}
	path = filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		tb.Fatal(err)
	}
	return path, name
}

// loadCollector loads one collector with fresh shared maps, releases the
// kernel BTF, and closes both when tb ends.
func loadCollector[C bpf.Collector](tb testing.TB, ring bpf.RingOptions, load func(*bpf.Shared) (C, error)) (*bpf.Shared, C) {
	tb.Helper()
	kerneltest.Require(tb)
	sh, err := bpf.NewShared(ring)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sh.Close() })
	c, err := load(sh)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	sh.ReleaseBTF()
	return sh, c
}

// loadProcess loads the process collector with fresh shared maps.
func loadProcess(tb testing.TB, ring bpf.RingOptions) (*bpf.Shared, *bpf.Process) {
	tb.Helper()
	return loadCollector(tb, ring, bpf.LoadProcess)
}

// drainAll runs a drainer of sh's ring until the returned stop is called,
// which returns once everything queued has been handed to emit.
func drainAll(tb testing.TB, sh *bpf.Shared, emit func(*bpf.Record)) (stop func() ringbuf.DrainStats) {
	tb.Helper()
	d, err := ringbuf.NewDrainer(sh.Events(), bpf.DecodeRecord, ringbuf.DrainOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, emit) }()
	return func() ringbuf.DrainStats {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("drain: %v", err)
		}
		st := d.Stats()
		d.Close()
		return st
	}
}

// TestProcessExecExitFork runs a uniquely named shell N times; each run
// forks one child and exits, half of them with status 3. Exactly N execs,
// N forks and N exits must carry the name, from the right pids.
func TestProcessExecExitFork(t *testing.T) {
	sh, p := loadProcess(t, bpf.RingOptions{})
	shell, name := uniqueCopy(t, "/bin/sh")

	type counts struct{ exec, exit, failed, fork int }
	got := make(map[uint32]*counts) // by the shell's pid
	var rec bpf.ProcessRecord
	stop := drainAll(t, sh, func(r *bpf.Record) {
		if err := r.Process(&rec); err != nil || string(rec.Name()) != name {
			return
		}
		pid := rec.TGID
		if rec.Kind == bpf.KindFork {
			pid = rec.Other
		}
		c := got[pid]
		if c == nil {
			c = new(counts)
			got[pid] = c
		}
		switch rec.Kind {
		case bpf.KindExec:
			c.exec++
		case bpf.KindExit:
			c.exit++
			if rec.Failed() {
				c.failed++
			}
		case bpf.KindFork:
			c.fork++
		}
	})
	if err := p.Attach(); err != nil {
		t.Fatal(err)
	}
	const n = 60
	var pids []int
	for i := range n {
		script := "/bin/true & wait"
		if i%2 == 1 {
			script += "; exit 3"
		}
		cmd := exec.Command(shell, "-c", script)
		err := cmd.Run()
		if (err != nil) != (i%2 == 1) {
			t.Fatalf("run %s -c %q: %v", shell, script, err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	stats := stop()

	for i, pid := range pids {
		want := counts{exec: 1, exit: 1, fork: 1, failed: i % 2}
		if c := got[uint32(pid)]; c == nil || *c != want {
			t.Errorf("shell %d (run %d): got %+v, want %+v", pid, i, c, want)
		}
	}
	if len(got) != n {
		t.Errorf("records named %s from %d processes, want %d", name, len(got), n)
	}
	total := uint64(0)
	for _, prog := range []bpf.Program{bpf.ProgExec, bpf.ProgExit, bpf.ProgFork} {
		l, err := sh.Ledger(prog)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s ledger %+v", prog, l)
		if !l.Balanced() || l.RingFull != 0 || l.SampledOut != 0 {
			t.Errorf("%s ledger %+v: want balanced, nothing lost", prog, l)
		}
		total += l.Emitted
	}
	if total != stats.Records || stats.DecodeErrors != 0 {
		t.Errorf("kernel emitted %d records, drained %+v", total, stats)
	}
}

// TestLedgerRingFull fills a one-page ring while no reader runs: the records
// that did not fit are counted as ring-full, and the ledger balances with
// what a reader then drains.
func TestLedgerRingFull(t *testing.T) {
	page := uint32(os.Getpagesize())
	sh, p := loadProcess(t, bpf.RingOptions{Size: page, WakeupBytes: 1})
	path, _ := uniqueCopy(t, "/bin/true")
	if err := p.Attach(); err != nil {
		t.Fatal(err)
	}
	capacity := int(page) / (bpf.ProcessRecordSize + 8) // 8-byte kernel header per record
	for range capacity {
		if err := exec.Command(path).Run(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	stats := drainAll(t, sh, func(*bpf.Record) {})()
	var emitted, full uint64
	for _, prog := range []bpf.Program{bpf.ProgExec, bpf.ProgExit, bpf.ProgFork} {
		l, err := sh.Ledger(prog)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s ledger %+v", prog, l)
		if !l.Balanced() {
			t.Errorf("%s ledger %+v does not balance", prog, l)
		}
		if l.RingFullEvents != l.RingFull {
			t.Errorf("%s ledger %+v: unsampled, ring-full events must equal records", prog, l)
		}
		emitted += l.Emitted
		full += l.RingFull
	}
	// Each run is a fork, an exec and an exit: three records.
	if full < 2*uint64(capacity) || emitted != stats.Records || emitted > uint64(capacity) {
		t.Errorf("ring of %d records: emitted %d, ring full %d, drained %d", capacity, emitted, full, stats.Records)
	}
}

// TestLedgerRingFullSampled fills a one-page ring with sampling at 1 in 4
// while no reader runs: each record lost to the full ring counts once as a
// record and four times as events, so that kept and lost records scaled by
// their rate account for every event seen, to within the rate per CPU.
func TestLedgerRingFullSampled(t *testing.T) {
	page := uint32(os.Getpagesize())
	sh, p := loadProcess(t, bpf.RingOptions{Size: page, WakeupBytes: 1})
	path, _ := uniqueCopy(t, "/bin/true")
	const rate = 4
	if err := p.SetSampleRate(rate); err != nil {
		t.Fatal(err)
	}
	if err := p.Attach(); err != nil {
		t.Fatal(err)
	}
	capacity := int(page) / (bpf.ProcessRecordSize + 8)
	for range 2 * rate * capacity {
		if err := exec.Command(path).Run(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	drainAll(t, sh, func(*bpf.Record) {})()
	cpus := uint64(runtime.NumCPU())
	for _, prog := range []bpf.Program{bpf.ProgExec, bpf.ProgExit, bpf.ProgFork} {
		l, err := sh.Ledger(prog)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s ledger %+v", prog, l)
		if !l.Balanced() || l.RingFull == 0 || l.SampledOut == 0 {
			t.Errorf("%s ledger %+v: want balanced, with records lost and sampled out", prog, l)
		}
		if l.RingFullEvents != rate*l.RingFull {
			t.Errorf("%s: %d records lost at rate %d counted as %d events, want %d", prog, l.RingFull, rate, l.RingFullEvents, rate*l.RingFull)
		}
		scaled := rate*l.Emitted + l.RingFullEvents
		if diff := int64(scaled) - int64(l.Seen); diff > int64(rate*cpus) || -diff > int64(rate*cpus) {
			t.Errorf("%s: emitted and lost scaled by rate %d, seen %d: off by more than %d", prog, scaled, l.Seen, rate*cpus)
		}
	}
}

// TestSampling keeps one exec in four per CPU: the ledger balances, and
// the uniquely named processes scaled by the record's rate are within the
// bound sampling allows (rate per CPU, plus one per foreign exec that can
// shift the phase).
func TestSampling(t *testing.T) {
	sh, p := loadProcess(t, bpf.RingOptions{})
	path, name := uniqueCopy(t, "/bin/true")
	const rate, n = 4, 400
	if err := p.SetSampleRate(rate); err != nil {
		t.Fatal(err)
	}
	if err := p.SetSampleRate(0); err == nil {
		t.Error("SetSampleRate(0) accepted")
	}
	var scaled uint64
	stop := drainAll(t, sh, func(r *bpf.Record) {
		var rec bpf.ProcessRecord
		if r.Kind == bpf.KindExec && r.Process(&rec) == nil && string(rec.Name()) == name {
			if rec.Rate != rate {
				t.Errorf("record rate %d, want %d", rec.Rate, rate)
			}
			scaled += uint64(rec.Rate)
		}
	})
	if err := p.Attach(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := exec.Command(path).Run(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	stop()
	l, err := sh.Ledger(bpf.ProgExec)
	if err != nil {
		t.Fatal(err)
	}
	foreign := l.Seen - n
	bound := rate * (uint64(runtime.NumCPU()) + foreign)
	t.Logf("exec ledger %+v; %d of ours scaled to %d (bound ±%d)", l, n, scaled, bound)
	if !l.Balanced() || l.SampledOut == 0 {
		t.Errorf("ledger %+v: want balanced with events sampled out", l)
	}
	if diff := int64(scaled) - n; diff > int64(bound) || -diff > int64(bound) {
		t.Errorf("scaled total %d, truth %d: off by more than %d", scaled, n, bound)
	}
}

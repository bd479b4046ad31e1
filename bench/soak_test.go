package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestExporterValue(t *testing.T) {
	for _, c := range []struct {
		line string
		want float64
		ok   bool
	}{
		{`host_syscalls_by_process{comm="bsload"} 1.234567e+06`, 1234567, true},
		{`host_syscalls_by_process{comm="bsload",host="a"} 7`, 7, true},
		{`host_syscalls_by_process{comm="bsloader"} 7`, 0, false},
		{`host_syscalls_by_process{comm="sshd"} 7`, 0, false},
		{`# TYPE host_syscalls_by_process counter`, 0, false},
		{`host_syscalls{comm="bsload"} 7`, 0, false},
	} {
		got, ok := exporterValue(c.line, "host_syscalls_by_process", "bsload")
		if got != c.want || ok != c.ok {
			t.Errorf("exporterValue(%q) = %v, %v; want %v, %v", c.line, got, ok, c.want, c.ok)
		}
	}
}

// steady is a soak of n samples 10 s apart under load, RSS and goroutines
// flat, the by-process ledger balanced and seeing 100 k events/s.
func steady(n int) *soakRun {
	r := &soakRun{cfg: soakConfig{dur: time.Duration(n) * 10 * time.Second, rate: 100_000}, Events: 1000, Received: 1000}
	for i := range n {
		seen := uint64(i) * 1_000_000
		r.Samples = append(r.Samples, soakSample{At: time.Duration(i) * 10 * time.Second, Load: true, RSS: 14 << 20, Goroutines: 9,
			Ledgers: []kernelLedger{{Program: byProcessProg, Seen: seen, Emitted: seen}}})
	}
	return r
}

func TestJudge(t *testing.T) {
	if f := steady(30).judge(); len(f) != 0 {
		t.Errorf("steady soak failed: %v", f)
	}
	for _, c := range []struct {
		name, want string
		spoil      func(r *soakRun)
	}{
		{"rss", "RSS grew", func(r *soakRun) { r.Samples[29].RSS = 16 << 20 }},
		{"goroutines", "goroutines grew", func(r *soakRun) { r.Samples[29].Goroutines = 10 }},
		{"ledger", "ledger of " + byProcessProg, func(r *soakRun) { r.Samples[20].Ledgers[0].Seen += 5000 }},
		{"receiver", "receiver got 990", func(r *soakRun) { r.Received = 990 }},
		{"receiver above", "receiver got 1010", func(r *soakRun) { r.Received, r.RingFull = 1010, 5 }},
	} {
		r := steady(30)
		c.spoil(r)
		if f := strings.Join(r.judge(), "\n"); !strings.Contains(f, c.want) {
			t.Errorf("%s: judge = %q, want %q", c.name, f, c.want)
		}
	}
	// Tolerated: RSS within 10% of the 2-minute mark, a goroutine more
	// before it, a read skew of a few events, losses the ledger counted.
	r := steady(30)
	r.Samples[0].RSS, r.Samples[29].RSS = 10<<20, 15<<20
	r.Samples[3].Goroutines, r.Samples[29].Goroutines = 11, 11
	r.Samples[20].Ledgers[0].Emitted -= 5
	r.Received, r.RingFull, r.UserDrops = 990, 4, 6
	if f := r.judge(); len(f) != 0 {
		t.Errorf("judge = %v, want no failure", f)
	}
}

func TestRSSSlope(t *testing.T) {
	r := steady(7)
	for i := range r.Samples {
		r.Samples[i].RSS = uint64(10+i) << 20 // 1 MB per 10 s
	}
	if got := rssSlope(r.Samples); math.Abs(got-60) > 1e-9 {
		t.Errorf("rssSlope = %v MB per 10 min, want 60", got)
	}
}

func TestWarmIndex(t *testing.T) {
	r := steady(30)
	if i := warmIndex(r.Samples, 300*time.Second); i != 12 {
		t.Errorf("warmIndex of a 5 min run = %d, want 12 (2 min)", i)
	}
	if i := warmIndex(r.Samples[:7], 60*time.Second); i != 4 {
		t.Errorf("warmIndex of a 1 min run = %d, want 4 (40 s)", i)
	}
}

package main

import (
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// A point is one end-to-end run at one target rate.
type point struct {
	Target   float64 // syscalls/s asked of the generator; 0: as fast as it can
	Threads  int     // generator threads
	MaxLevel int     // highest throttle level seen during the load
	GCAll    gcStats // every GC since the daemon started
	Err      string
	Load     loadResult
	// Kernel is the kernel's own count of the generator threads' syscalls
	// (a [commCounter]), the Go runtime's on them included: the truth
	// received is held to. KernelErr says why there is none.
	Kernel     uint64
	KernelErr  string
	Received   uint64  // by-process count for the generator's comm at the receiver
	Background float64 // by-process events/s of everything else, just before the load
	KernelRate float64 // syscall events/s the daemon saw during the load (all comms)
	CPU        float64 // daemon CPU, % of one core, over the steady part of the load
	RSSMax     uint64  // largest VmRSS sampled during the load
	Heap       uint64  // heap_bytes from --status at the end of the load
	P50, P99   time.Duration
	LatMax     time.Duration
	SampleRate uint32 // kernel sampling at the end of the load
	Throttle   int
	RingFull   uint64 // kernel ring_full drops during the load, every program
	// RingFullEvents weighs each ring_full record by the sample rate it
	// was taken at: the events lost, every program.
	RingFullEvents uint64
	Sampled        uint64 // kernel sampled_out drops during the load
	UserDrops      uint64 // drain, queue, send drops during the load
	// Overflow is the by-process count of the cardinality overflow
	// series: the comm's events are there if the host had more names than
	// the budget.
	Overflow uint64
	// RcvDrops counts datagrams the receiver's socket dropped, its buffer
	// full; RcvErr says why it could not be read.
	RcvDrops  uint64
	RcvErr    string
	GC        gcStats
	Datagrams uint64
	Profile   string // perf's top symbols of the daemon, after the measured window
}

// NSPerEvent is the daemon's CPU time per syscall event it saw, from
// every comm: the background included, which the per-rate CPU is not
// free of.
func (p *point) NSPerEvent() float64 {
	if p.KernelRate <= 0 {
		return math.NaN()
	}
	return p.CPU / 100 * 1e9 / p.KernelRate
}

func (p *point) GenRate() float64 { return float64(p.Load.Syscalls()) / p.Load.Elapsed.Seconds() }

// Truth is the kernel's count of the generator threads' syscalls, or,
// without one, the generator's own count, which misses the Go runtime's
// syscalls on its threads (signal returns, mostly).
func (p *point) Truth() uint64 {
	if p.KernelErr != "" {
		return p.Load.Syscalls()
	}
	return p.Kernel
}

// truthName says what [point.Truth] counted.
func (p *point) truthName() string {
	if p.KernelErr != "" {
		return "generated"
	}
	return "counted by the kernel"
}

// Missing is the truth minus received (negative: more arrived than the
// truth counted, which only the generator's own count allows).
func (p *point) Missing() int64 { return int64(p.Truth()) - int64(p.Received) }

// Unaccounted is what is missing beyond what the drop ledger counted: the
// events the full ring lost (each record at its sample rate stands for
// that many events, as the received counts are scaled), user-space
// drops, and the by-process overflow series (every comm's).
func (p *point) Unaccounted() int64 {
	return max(0, p.Missing()-int64(max(p.RingFullEvents, p.RingFull)+p.UserDrops+p.Overflow))
}

// latencyBogus reports latencies that cannot be real: the daemon samples
// every ring record's TimeNS, and the syscall program sets it on one
// record in 64 only (0 otherwise), so samples of 0 give "now - 0", the
// machine's uptime.
func (p *point) latencyBogus() bool { return p.P50 > 10*time.Minute }

func latency(p *point, d time.Duration) string {
	if p.latencyBogus() {
		return "invalid (" + d.Round(time.Second).String() + ")"
	}
	return d.Round(time.Millisecond).String()
}

func rateName(r float64) string {
	if r == 0 {
		return "max"
	}
	return Num(r) + "/s"
}

// runEndToEnd runs a fresh daemon for each target rate.
func runEndToEnd(bin, dir string, rates []float64, dur, flush, prof time.Duration) []*point {
	var pts []*point
	for _, r := range rates {
		log.Printf("end to end: target %s for %s", rateName(r), dur)
		p := runPoint(bin, filepath.Join(dir, "rate-"+strconv.FormatFloat(r, 'f', 0, 64)), r, dur, flush, prof)
		if p.Err != "" {
			log.Printf("end to end: %s: %s", rateName(r), p.Err)
		} else {
			log.Printf("end to end: %s: generated %.0f/s, received %d of %d, daemon CPU %.1f%%, RSS %.1f MB, p99 %s",
				rateName(r), p.GenRate(), p.Received, p.Truth(), p.CPU, float64(p.RSSMax)/(1<<20), p.P99)
		}
		pts = append(pts, p)
	}
	return pts
}

// runPoint measures one rate. With prof > 0 the load runs prof longer,
// and perf samples the daemon then, outside the measured window.
func runPoint(bin, dir string, rate float64, dur, flush, prof time.Duration) *point {
	p := &point{Target: rate}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.Err = err.Error()
		return p
	}
	rcv, err := newReceiver()
	if err != nil {
		p.Err = err.Error()
		return p
	}
	defer rcv.close()
	d, err := startDaemon(bin, dir, "udp://"+rcv.addr(), flush)
	if err != nil {
		p.Err = err.Error()
		return p
	}
	defer d.stop()
	time.Sleep(2*flush + time.Second) // start-up done, one interval's rate measured

	before, err := d.status()
	if err != nil {
		p.Err = err.Error()
		return p
	}
	for _, c := range before.Collectors {
		if c.Name == "syscalls" {
			p.Background = c.EventsPerSec
		}
	}
	gcFrom := fileSize(d.stderr)
	dg0 := rcv.datagrams.Load()

	done := make(chan loadResult)
	p.Threads = 1
	if rate == 0 || rate > 600_000 {
		p.Threads = 2 // one thread with the probe tops out below 1 M/s here
	}
	// The kernel's count costs each syscall of the generator a filtered
	// perf event: the unpaced run goes without, so as to measure the most
	// the daemon gets.
	var counter *commCounter
	if rate == 0 {
		p.KernelErr = "not counted at max rate"
	} else if counter, err = newCommCounter(loadComm); err != nil {
		p.KernelErr = err.Error()
	} else {
		defer counter.close()
	}
	go func() { done <- runLoad(rate, dur+prof, p.Threads) }()
	loadStart := time.Now()
	warm := min(2*time.Second, dur/4)
	time.Sleep(warm)
	cpu0, _ := procCPU(d.cmd.Process.Pid)
	t0 := time.Now()
	var cpu1 time.Duration
	var t1 time.Time
	for tick := 0; ; tick++ {
		if tick%4 == 0 {
			if s, err := d.status1(); err == nil {
				p.MaxLevel = max(p.MaxLevel, s.Throttle.Level)
			}
		}
		select {
		case p.Load = <-done:
		case <-time.After(250 * time.Millisecond):
			p.RSSMax = max(p.RSSMax, procRSS(d.cmd.Process.Pid))
			if time.Since(loadStart) < dur-200*time.Millisecond {
				cpu1, _ = procCPU(d.cmd.Process.Pid)
				t1 = time.Now()
			} else if prof > 0 && p.Profile == "" {
				p.Profile = perfProfile(dir, d.cmd.Process.Pid, prof-time.Second)
			}
			continue
		}
		break
	}
	if wall := t1.Sub(t0); wall > 0 {
		p.CPU = 100 * (cpu1 - cpu0).Seconds() / wall.Seconds()
	}
	end, err := d.status()
	if err != nil {
		p.Err = err.Error()
		return p
	}
	p.RSSMax = max(p.RSSMax, end.RSSBytes)
	p.Heap = end.HeapBytes
	p.P50, _ = time.ParseDuration(end.Latency.P50)
	p.P99, _ = time.ParseDuration(end.Latency.P99)
	p.LatMax, _ = time.ParseDuration(end.Latency.Max)
	p.SampleRate = end.Throttle.SampleRate
	p.Throttle = end.Throttle.Level
	p.KernelRate = float64(end.syscallEvents()-before.syscallEvents()) / time.Since(loadStart).Seconds()

	// Balance the books: read the ledger once the last records are
	// drained, then stop the daemon, which ships a last interval, and
	// count what arrived.
	time.Sleep(flush + 500*time.Millisecond)
	after, err := d.status()
	if err != nil {
		p.Err = err.Error()
		return p
	}
	d.stop()
	time.Sleep(300 * time.Millisecond)
	p.GC = readGC(d.stderr, gcFrom)
	p.GCAll = readGC(d.stderr, 0)
	p.Received = rcv.load.Load()
	p.Overflow = rcv.overflow.Load()
	if counter != nil { // the generator's threads have exited
		if p.Kernel, err = counter.count(); err != nil {
			p.KernelErr = err.Error()
		}
	}
	if n, err := rcv.socketDrops(); err != nil {
		p.RcvErr = err.Error()
	} else {
		p.RcvDrops = n
	}
	p.Datagrams = rcv.datagrams.Load() - dg0
	b, a := ledger(before.Drops), ledger(after.Drops)
	for k, v := range a {
		delta := v - b[k]
		switch {
		case hasPrefix(k, "kernel/ring_full_events"):
			p.RingFullEvents += delta
		case hasPrefix(k, "kernel/ring_full"):
			p.RingFull += delta
		case hasPrefix(k, "kernel/sampled_out"):
			p.Sampled += delta
		default:
			p.UserDrops += delta
		}
	}
	return p
}

func rcvDrops(p *point) string {
	if p.RcvErr != "" {
		return "unknown: " + p.RcvErr
	}
	return strconv.FormatUint(p.RcvDrops, 10)
}

func kernelCount(p *point) string {
	if p.KernelErr != "" {
		return "none: " + p.KernelErr
	}
	return strconv.FormatUint(p.Kernel, 10)
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// e2eTable renders the end-to-end points.
func e2eTable(pts []*point) *Table {
	t := &Table{Head: []string{"target", "threads", "generated/s", "daemon saw events/s (all comms)", "throttle level: max, end (flush ×2^level)", "daemon CPU % of a core", "daemon CPU ns per event seen", "RSS max MB", "Go heap MB", "latency p50", "latency p99", "kernel sampling 1 in", "generated", "kernel count", "received", "missing", "ring_full (all)", "ring_full events (all)", "sampled_out", "user-space drops", "by_process overflow series", "receiver socket drops (datagrams)", "unaccounted", "background events/s"}}
	for _, p := range pts {
		if p.Err != "" {
			t.Add(rateName(p.Target), "error: "+p.Err)
			continue
		}
		t.Add(rateName(p.Target), strconv.Itoa(p.Threads), Num(p.GenRate()), Num(p.KernelRate), fmt.Sprintf("%d, %d", max(p.MaxLevel, p.Throttle), p.Throttle), fmt.Sprintf("%.1f", p.CPU), Num(p.NSPerEvent()),
			fmt.Sprintf("%.1f", float64(p.RSSMax)/(1<<20)), fmt.Sprintf("%.1f", float64(p.Heap)/(1<<20)),
			latency(p, p.P50), latency(p, p.P99), strconv.Itoa(int(max(p.SampleRate, 1))),
			strconv.FormatUint(p.Load.Syscalls(), 10), kernelCount(p), strconv.FormatUint(p.Received, 10),
			fmt.Sprintf("%d (%.2f%%)", p.Missing(), 100*float64(p.Missing())/math.Max(1, float64(p.Truth()))),
			strconv.FormatUint(p.RingFull, 10), strconv.FormatUint(p.RingFullEvents, 10), strconv.FormatUint(p.Sampled, 10), strconv.FormatUint(p.UserDrops, 10),
			strconv.FormatUint(p.Overflow, 10), rcvDrops(p), strconv.FormatInt(p.Unaccounted(), 10), Num(p.Background))
	}
	return t
}

func gcTable(pts []*point) *Table {
	t := &Table{Head: []string{"target", "GC cycles during load", "STW pause p99", "STW pause max", "heap max MB (gctrace)", "live heap max MB", "GC cycles since start", "STW pause max since start"}}
	for _, p := range pts {
		if p.Err != "" {
			continue
		}
		t.Add(rateName(p.Target), strconv.Itoa(p.GC.Cycles), p.GC.PauseP99.String(), p.GC.PauseMax.String(),
			strconv.Itoa(p.GC.HeapMaxMB), strconv.Itoa(p.GC.LiveMaxMB), strconv.Itoa(p.GCAll.Cycles), p.GCAll.PauseMax.String())
	}
	return t
}

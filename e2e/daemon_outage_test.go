package e2e

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDaemonReceiverDownUDP kills statsd_exporter under the daemon: the
// breaker opens within 5 s and --health says why, memory stays flat while
// it is open (20 s; 60 s with BPFSTATD_E2E_LONG=1), and once the exporter is
// back on the same port shipping resumes within 10 s. The two exporter
// lives together got every exec the test ran, less what the ledger counts
// as lost.
func TestDaemonReceiverDownUDP(t *testing.T) {
	requireE2E(t)
	testOutage(t, outage{hold: longForm("BPFSTATD_E2E_LONG", 20*time.Second, 60*time.Second), checkRSS: true})
}

// TestDaemonReceiverDeathCounted kills a UDP receiver and runs execs at
// once, before the breaker opens: the datagrams shipped in the first
// intervals after the death are sent successfully and come back as ICMP
// port unreachables only afterwards. The daemon reads each one from its
// socket's error queue (IP_RECVERR) and counts the datagram's lines as
// failed, so that whatever execs the exporter lacks, the ledger counts lost
// lines for.
func TestDaemonReceiverDeathCounted(t *testing.T) {
	requireE2E(t)
	testOutage(t, outage{hold: 3 * time.Second, execsAtOnce: true})
}

// TestDaemonReceiverUnixgramRecreated ships to statsd_exporter's unixgram
// socket, stops the exporter (its socket file goes), and starts it again:
// the daemon reconnects to the new socket and the ledger balances.
func TestDaemonReceiverUnixgramRecreated(t *testing.T) {
	requireE2E(t)
	// Socket paths are limited to 108 bytes: keep it short.
	dir, err := os.MkdirTemp("", "bpfst-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testOutage(t, outage{unixPath: filepath.Join(dir, "statsd.sock"), hold: 3 * time.Second})
}

type outage struct {
	unixPath string        // a unixgram receiver at this path, or UDP
	hold     time.Duration // how long the receiver stays down
	checkRSS bool          // RSS may grow at most 10% while it is down
	// execsAtOnce runs execs as soon as the receiver is gone, before the
	// breaker opens, rather than once it is open.
	execsAtOnce bool
	// link, if set, starts the receiver somewhere else, returns how the
	// daemon is to be started, and how the path to the receiver is cut
	// and restored; the receiver itself stays up.
	link func(t *testing.T) (exp *exporter, start func(*exec.Cmd) error, cut, restore func())
}

func testOutage(t *testing.T, o outage) {
	unixPath, hold, checkRSS := o.unixPath, o.hold, o.checkRSS
	var exp *exporter
	start, cut, restore := (*exec.Cmd).Start, func() {}, func() {}
	if o.link != nil {
		exp, start, cut, restore = o.link(t)
	} else {
		exp = startExporter(t, unixPath)
	}
	d := startDaemonWith(t, start, exp.output(), "--collectors", "process", "--flush-interval", "200ms")
	name := uniqueName("bpfst-")
	helper := helperProgram(t, t.TempDir(), name)
	total := 0
	run := func(n int) {
		t.Helper()
		if err := runMany(helper, n, 2); err != nil {
			t.Fatal(err)
		}
		total += n
	}

	// Phase 1: the receiver is up.
	run(200)
	f1, ok := exp.waitFor(t, 10*time.Second, func(f families) bool { return f.sum(promExec, "comm", name) >= 200 })
	if !ok {
		t.Fatalf("exporter got %v of 200 execs within 10s", f1.sum(promExec, "comm", name))
	}

	// Phase 2: the receiver dies, or the path to it is cut, with execs
	// going on.
	if o.link != nil {
		cut()
	} else if unixPath != "" {
		exp.stop(t) // it removes its socket file on the way out
		if _, err := os.Stat(unixPath); !errors.Is(err, os.ErrNotExist) {
			t.Logf("statsd_exporter left %s behind (%v): removing it", unixPath, err)
			os.Remove(unixPath)
		}
	} else {
		exp.kill()
	}
	down := time.Now()
	if o.execsAtOnce {
		run(100)
	}
	var opened time.Duration
	for {
		if s := d.status(t); s.Breaker != "closed" {
			opened = time.Since(down)
			t.Logf("breaker %s %v after the receiver went", s.Breaker, opened.Round(time.Millisecond))
			break
		}
		if time.Since(down) > 5*time.Second {
			t.Fatalf("breaker still closed 5s after the receiver went; ledger: %s", d.drops(t).nonZero())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Lines that failed before the breaker opened are lost (and counted):
	// the test's execs start once it is open, so that they are all kept.
	run(100)
	out, code := d.query(t, "--health")
	if code != 1 || !strings.Contains(out, "circuit breaker") {
		t.Errorf("--health with the receiver down: exit %d, %q; want 1 naming the circuit breaker", code, out)
	} else {
		t.Logf("--health: exit 1, %q", strings.TrimSpace(out))
	}

	// Hold it down, still running execs, watching memory.
	var rss []uint64
	for end := time.Now().Add(hold); time.Now().Before(end); {
		run(20)
		rss = append(rss, d.rss(t))
		time.Sleep(time.Second)
	}
	if s := d.status(t); s.Breaker == "closed" {
		t.Errorf("breaker closed with the receiver still down")
	}
	if checkRSS {
		base, peak := rss[0], rss[0]
		for _, r := range rss {
			peak = max(peak, r)
		}
		t.Logf("RSS over %v with the breaker open: first %.1f MiB, peak %.1f MiB (%+.1f%%), %d samples",
			hold, mib(base), mib(peak), 100*(float64(peak)/float64(base)-1), len(rss))
		if float64(peak) > 1.10*float64(base) {
			t.Errorf("RSS grew from %.1f to %.1f MiB while the breaker was open: more than 10%%", mib(base), mib(peak))
		}
	}

	sum := func(f families) float64 { return f1.sum(promExec, "comm", name) + f.sum(promExec, "comm", name) }
	if o.link != nil { // the same exporter throughout
		sum = func(f families) float64 { return f.sum(promExec, "comm", name) }
	}

	// Phase 3: the receiver comes back at the same address.
	back := time.Now()
	if o.link != nil {
		restore()
	} else {
		exp.start(t)
	}
	f2, ok := exp.waitFor(t, 10*time.Second, func(f families) bool { return sum(f) > f1.sum(promExec, "comm", name) })
	if !ok {
		t.Fatalf("nothing shipped within 10s of the receiver's return; status breaker %s, ledger %s",
			d.status(t).Breaker, d.drops(t).nonZero())
	}
	t.Logf("shipping resumed %v after the receiver came back", time.Since(back).Round(time.Millisecond))
	run(100)

	// Everything arrives, less what the ledger counts as lost.
	f2, _ = exp.waitFor(t, 10*time.Second, func(f families) bool { return sum(f) >= float64(total) })
	time.Sleep(500 * time.Millisecond) // two more intervals: the ledger covers what was sent
	l := d.drops(t)
	f2 = exp.mustScrape(t)
	got := sum(f2)
	ringFull, sampled, lines := l.count("kernel", "ring_full", "exec"), l.count("kernel", "sampled_out", "exec"), l.userLost()
	want := float64(total) - float64(ringFull)
	t.Logf("generated %d execs of %s; exporter got %v before the outage + %v after = %v; ledger: %s; breaker %s",
		total, name, f1.sum(promExec, "comm", name), f2.sum(promExec, "comm", name), got, l.nonZero(), d.status(t).Breaker)
	switch {
	case o.execsAtOnce && got < want && lines == 0:
		t.Errorf("exporter got %v execs of %s, test ran %d: %v lost and the ledger counts no line lost", got, name, total, want-got)
	case o.execsAtOnce:
		// A lost line carries a sum, not one exec: the ledger can only say
		// that something was lost.
		if got > want || got < want && lines == 0 {
			t.Errorf("exporter got %v execs of %s, want %v less what %d lost lines held", got, name, want, lines)
		}
	case sampled == 0 && got != want:
		t.Errorf("exporter got %v execs of %s, want exactly %v (ran %d, ring full %d, no sampling)", got, name, want, total, ringFull)
	case sampled != 0 && math.Abs(got-want) > 0.05*want:
		// The throttle samples the kernel while the breaker is open: each
		// kept record counts for the sample rate, so the total is an
		// estimate, off by less than the rate for each run of the test's
		// execs that other execs interleave.
		t.Errorf("exporter got %v execs of %s, want %v within 5%% (the kernel sampled %d of them out)", got, name, want, sampled)
	}
	if bad := append(exporterErrors(f1), exporterErrors(f2)...); len(bad) != 0 {
		t.Errorf("statsd_exporter counted malformed input: %v", bad)
	}
	if took, err := d.terminate(t, 5*time.Second); err != nil {
		t.Errorf("after SIGTERM: %v (after %v)", err, took)
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

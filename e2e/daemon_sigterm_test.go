package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestDaemonSIGTERMUnderLoad runs K execs of a uniquely named program from
// a few goroutines while the daemon ships to statsd_exporter, sends SIGTERM
// as soon as the last exec has returned, and checks that the daemon exits
// 0 within 5 s having shipped every exec and exit: the exporter's totals
// for the name equal K minus what the ledger says was lost, which must be
// nothing.
func TestDaemonSIGTERMUnderLoad(t *testing.T) {
	requireE2E(t)
	k := 2000
	if s := os.Getenv("BPFSTATD_E2E_EXECS"); s != "" {
		k, _ = strconv.Atoi(s)
	}
	exp := startExporter(t, "")
	// A long flush interval: almost everything is still in the daemon
	// (kernel ring, aggregator, queue) when SIGTERM arrives.
	d := startDaemon(t, exp.output(), "--collectors", "process", "--flush-interval", "2s")
	name := uniqueName("bpfst-")
	helper := helperProgram(t, t.TempDir(), name)

	start := time.Now()
	if err := runMany(helper, k/2, 4); err != nil {
		t.Fatal(err)
	}
	// The ledger mid-run, from a second bpfstatd, as an operator reads it.
	mid := d.drops(t)
	if err := runMany(helper, k-k/2, 4); err != nil {
		t.Fatal(err)
	}
	took, err := d.terminate(t, 5*time.Second)
	gen := time.Since(start) - took
	if err != nil {
		t.Fatalf("after SIGTERM: %v (after %v); want exit 0 within 5s", err, took.Round(time.Millisecond))
	}
	t.Logf("%d execs in %v (%.0f/s); SIGTERM to exit 0: %v", k, gen.Round(time.Millisecond),
		float64(k)/gen.Seconds(), took.Round(time.Millisecond))

	// The exporter queues events for up to 200 ms before they show.
	f, _ := exp.waitFor(t, 5*time.Second, func(f families) bool {
		return f.sum(promExec, "comm", name) >= float64(k) && f.sum(promExit, "comm", name) >= float64(k)
	})
	execs, exits := f.sum(promExec, "comm", name), f.sum(promExit, "comm", name, "failed", "false")
	lost := selfLost(f)
	t.Logf("exporter: %v execs, %v exits of %s; ledger mid-run: %s; self-counters at the exporter: ring_full %v, decode_errors %v, lines_dropped %v",
		execs, exits, name, mid.nonZero(), f.sum(promRingFull), f.sum(promDecodeErrors), f.sum(promLinesDropped))

	// The final interval's ledger is only in the self-counters shipped with
	// it (the admin socket closes before the last flush): they must cover
	// the mid-run ledger, and balance the exporter's totals.
	if mid.count("kernel", "ring_full", "") > uint64(f.sum(promRingFull)) {
		t.Errorf("ledger mid-run says %d ring-full drops, the exporter got only %v", mid.count("kernel", "ring_full", ""), f.sum(promRingFull))
	}
	if lost != 0 {
		t.Errorf("the daemon reports %v events or lines lost with an idle host and a live receiver; want 0", lost)
	}
	if execs != float64(k)-lost || exits != float64(k)-lost {
		t.Errorf("exporter has %v execs and %v exits of %s; generated %d, ledger lost %v: want %v each",
			execs, exits, name, k, lost, float64(k)-lost)
	}
	if bad := exporterErrors(f); len(bad) != 0 {
		t.Errorf("statsd_exporter counted malformed input: %v", bad)
	}
}

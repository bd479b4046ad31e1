package e2e

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDaemonIdleSeriesEvicted makes the syscall-by-name series idle long
// enough to be evicted (60 intervals of 20 ms), then makes a syscall nobody
// makes: the daemon must count it under its own name, not crash on the
// evicted key (as it did when the syscall source kept the keys it
// interned at start) nor count it under whatever series reused the key.
func TestDaemonIdleSeriesEvicted(t *testing.T) {
	requireE2E(t)
	exp := startExporter(t, "")
	d := startDaemon(t, exp.output(), "--collectors", "syscalls", "--flush-interval", "20ms")
	time.Sleep(3 * time.Second) // 150 intervals: every series untouched since start is evicted

	const calls = 7
	for range calls {
		// personality(0xffffffff) only reads the persona.
		if _, _, errno := unix.Syscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0); errno != 0 {
			t.Fatal(errno)
		}
	}
	f, ok := exp.waitFor(t, 5*time.Second, func(f families) bool {
		return f.sum("host_syscalls", "syscall", "personality") >= calls
	})
	select {
	case <-d.done:
		t.Fatalf("daemon exited (%v) after a syscall whose series had been evicted", d.err)
	default:
	}
	if !ok {
		t.Errorf("exporter counts %v personality calls, want at least %d", f.sum("host_syscalls", "syscall", "personality"), calls)
	}
	l := d.drops(t)
	if took, err := d.terminate(t, 5*time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v (after %v)", err, took)
	}
	t.Logf("personality calls at the exporter: %v (test made %d; other processes may add); ledger %s",
		f.sum("host_syscalls", "syscall", "personality"), calls, l.nonZero())
	if lost := l.userLost(); lost != 0 {
		t.Errorf("ledger counts %d lines lost: %s", lost, l.nonZero())
	}
	if bad := exporterErrors(f); len(bad) != 0 {
		t.Errorf("statsd_exporter counted malformed input: %v", bad)
	}
}

package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sample() Snapshot {
	return Snapshot{
		PID: 42, Uptime: Duration(90 * time.Second), Output: "udp://127.0.0.1:8125",
		Collectors: []CollectorStatus{{Name: "process", Programs: 3, Events: 1200, EventsPerSec: 12.5}},
		Throttle:   Throttle{Level: 1, SampleRate: 4},
		Breaker:    "open",
		Latency:    Latency{P50: Duration(2 * time.Millisecond), P99: Duration(9 * time.Millisecond)},
		Goroutines: 17,
		Ledgers:    []Ledger{{Program: "exec", Seen: 1207, Emitted: 1200, RingFull: 7}},
		Drops:      []Drop{{Stage: "kernel", Reason: "ring_full", Source: "exec", Count: 7}, {Stage: "send", Reason: "breaker_open", Count: 3}},
		Health:     Health{Healthy: false, Reasons: []string{"circuit breaker open: connection refused"}},
	}
}

func serve(t *testing.T, path string, snap func() Snapshot) {
	t.Helper()
	s, err := Listen(path, snap)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func TestQueryRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "admin.sock")
	serve(t, path, sample)
	got, err := Query(path)
	if err != nil {
		t.Fatal(err)
	}
	want := sample()
	if got.PID != want.PID || got.Uptime != want.Uptime || got.Breaker != "open" || len(got.Drops) != 2 || got.Drops[0] != want.Drops[0] || got.Health.Healthy ||
		got.Goroutines != 17 || len(got.Ledgers) != 1 || got.Ledgers[0] != want.Ledgers[0] {
		t.Errorf("Query = %+v, want %+v", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := Listen(path, sample); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Listen on a live socket: %v", err)
	}
}

func TestQueryNotRunning(t *testing.T) {
	if _, err := Query(filepath.Join(t.TempDir(), "none.sock")); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Query without a daemon = %v, want ErrNotRunning", err)
	}
}

// TestStaleSocketReplaced listens where a dead daemon left its socket.
func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	s, err := Listen(path, sample)
	if err != nil {
		t.Fatal(err)
	}
	s.ln.SetUnlinkOnClose(false)
	s.Close() // the file stays, nobody listens
	serve(t, path, sample)
	if _, err := Query(path); err != nil {
		t.Fatal(err)
	}
}

// TestMain doubles as a query client for TestOnlyRootMayQuery, which runs
// this binary again as an unprivileged user.
func TestMain(m *testing.M) {
	if path := os.Getenv("ADMIN_TEST_QUERY"); path != "" {
		if _, err := Query(path); err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
		fmt.Println("answered")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestOnlyRootMayQuery queries as root and as nobody from child processes:
// the socket's mode refuses nobody.
func TestOnlyRootMayQuery(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	dir, err := os.MkdirTemp("", "admin-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Let nobody reach the socket's directory, so the socket's own mode
	// decides.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "run", "admin.sock")
	serve(t, path, sample)
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// A copy of this test binary that nobody can run.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.MkdirTemp("", "admin-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	self := filepath.Join(bin, "admin.test")
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(self, data, 0o755); err != nil {
		t.Fatal(err)
	}
	query := func(uid uint32) (string, error) {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), "ADMIN_TEST_QUERY="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := query(0); err != nil || !strings.Contains(out, "answered") {
		t.Fatalf("root query: %v, %s", err, out)
	}
	out, err := query(65534)
	if err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("an unprivileged user read the admin socket: %v, %s", err, out)
	}
	t.Logf("as nobody: %s", strings.TrimSpace(out))
	// The same query succeeds once the mode allows it: the refusal above
	// came from the socket's mode.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if out, err := query(65534); err == nil || strings.Contains(out, "answered") {
		t.Errorf("nobody got an answer past the peer check: %v, %s", err, out)
	}
}

func TestFormat(t *testing.T) {
	var b bytes.Buffer
	s := sample()
	WriteStatus(&b, s)
	for _, want := range []string{"pid 42, up 1m30s", "unhealthy: circuit breaker open", "collector process", "3 programs attached", "12.5 events/s", "1 event in 4", "breaker", "p99 9ms", "17 goroutines"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	WriteDrops(&b, s)
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); len(lines) != 3 || !strings.Contains(lines[1], "ring_full") || !strings.HasSuffix(strings.TrimSpace(lines[1]), "7") {
		t.Errorf("drops table:\n%s", b.String())
	}
	b.Reset()
	s.Health = Health{Healthy: true}
	WriteHealth(&b, s)
	if b.String() != "healthy\n" {
		t.Errorf("health %q", b.String())
	}
}

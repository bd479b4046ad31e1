package e2e

// The harness of the end-to-end tests of the daemon: TestMain builds the
// bpfstatd binary from the parent module and statsd_exporter from this one;
// the tests start both, drive the kernel (execs), read what the exporter
// made of it through its /metrics, and compare with the truth and with the
// daemon's drop ledger.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bpfstatd/bpfstatd/internal/admin"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

// Binaries built once by TestMain; buildErr says why they are missing.
var (
	daemonBin, exporterBin string
	buildErr               error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bpfstatd-e2e-bin-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	daemonBin = filepath.Join(dir, "bpfstatd")
	exporterBin = filepath.Join(dir, "statsd_exporter")
	// Build only when a kernel test can run: the wire tests need neither.
	if os.Geteuid() == 0 || os.Getenv(kerneltest.RequireEnv) == "1" {
		buildErr = buildBinaries()
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildBinaries() error {
	// The daemon from the parent module, with its own go.mod, as released;
	// statsd_exporter from this one.
	for _, b := range [][3]string{
		{"..", daemonBin, "./cmd/bpfstatd"},
		{".", exporterBin, "github.com/prometheus/statsd_exporter"},
	} {
		cmd := exec.Command("go", "build", "-o", b[1], b[2])
		cmd.Dir = b[0]
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // the daemon as released: see make build
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", b[2], err, out)
		}
	}
	return nil
}

// requireE2E skips (or, with BPFSTATD_REQUIRE_KERNEL=1, fails) a test that
// cannot load bpfstatd's programs here, and fails one whose binaries did
// not build.
func requireE2E(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		kerneltest.Unavailable(t, "the end-to-end tests run the daemon and need root")
	}
	kerneltest.Require(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// uniqueName is a process name of 14 bytes that no other process has.
func uniqueName(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// helperProgram copies /bin/true to dir/name, so that its execs carry comm
// name (cut to 15 bytes by the kernel).
func helperProgram(t *testing.T, dir, name string) string {
	t.Helper()
	src, err := os.ReadFile("/bin/true")
	if err != nil {
		kerneltest.Unavailable(t, "no /bin/true to exec: "+err.Error())
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// runMany runs path k times from workers goroutines and returns the first
// error.
func runMany(path string, k, workers int) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for w := range workers {
		n := k / workers
		if w < k%workers {
			n++
		}
		wg.Go(func() {
			for range n {
				if err := exec.Command(path).Run(); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// freePort returns a port of network ("udp" or "tcp") on 127.0.0.1 that
// was free a moment ago.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// exporter is a statsd_exporter started by a test, listening on UDP or a
// Unix datagram socket, with its web interface on a loopback port.
type exporter struct {
	udpPort  int     // 0 with a unixgram listener
	udpHost  string  // its UDP address, 127.0.0.1 unless set
	unixPath string  // "" with a UDP listener
	web      string  // HOST:PORT of /metrics
	ns       *testNS // the network namespace it runs in, nil for the test's

	cmd    *exec.Cmd
	done   chan struct{}
	stderr *bytes.Buffer
}

// startExporter starts statsd_exporter on a fresh UDP port, or on the Unix
// datagram socket unixPath if it is not empty. It stops it on cleanup.
func startExporter(t *testing.T, unixPath string) *exporter {
	t.Helper()
	e := &exporter{unixPath: unixPath, web: fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))}
	if unixPath == "" {
		e.udpPort = freePort(t, "udp")
	}
	e.start(t)
	t.Cleanup(func() { e.stop(t) })
	return e
}

// addr is the daemon's --output for the exporter.
func (e *exporter) output() string {
	if e.unixPath != "" {
		return "unix://" + e.unixPath
	}
	return fmt.Sprintf("udp://%s:%d", e.host(), e.udpPort)
}

// start starts the exporter on its addresses (again, after stop) and waits
// until /metrics answers.
func (e *exporter) start(t *testing.T) {
	t.Helper()
	args := []string{"--web.listen-address=" + e.web, "--statsd.listen-tcp=", "--log.level=warn"}
	if e.unixPath != "" {
		args = append(args, "--statsd.listen-udp=", "--statsd.listen-unixgram="+e.unixPath)
	} else {
		args = append(args, fmt.Sprintf("--statsd.listen-udp=%s:%d", e.host(), e.udpPort))
	}
	e.stderr = new(bytes.Buffer)
	e.cmd = exec.Command(exporterBin, args...)
	e.cmd.Stdout, e.cmd.Stderr = e.stderr, e.stderr
	start := e.cmd.Start
	if e.ns != nil {
		start = func() error { return e.ns.do(e.cmd.Start) }
	}
	if err := start(); err != nil {
		t.Fatal(err)
	}
	e.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(e.cmd, e.done)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := e.scrape(); err == nil {
			return
		}
		select {
		case <-e.done:
			t.Fatalf("statsd_exporter exited at start: %s", e.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("statsd_exporter did not serve /metrics on %s within 10s: %s", e.web, e.stderr)
		}
	}
}

// stop ends the exporter (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (e *exporter) stop(t *testing.T) {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	select {
	case <-e.done:
		return
	default:
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		e.cmd.Process.Kill()
		<-e.done
	}
}

// kill ends the exporter at once, as a crash would.
func (e *exporter) kill() {
	e.cmd.Process.Kill()
	<-e.done
}

// families is a scrape of /metrics.
type families map[string]*dto.MetricFamily

func (e *exporter) host() string {
	if e.udpHost != "" {
		return e.udpHost
	}
	return "127.0.0.1"
}

func (e *exporter) scrape() (families, error) {
	c := http.Client{Timeout: 5 * time.Second}
	if e.ns != nil {
		// Connect from inside the exporter's namespace.
		c.Transport = &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = e.ns.do(func() (err error) {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		}}
	}
	resp, err := c.Get("http://" + e.web + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

func (e *exporter) mustScrape(t *testing.T) families {
	t.Helper()
	f, err := e.scrape()
	if err != nil {
		t.Fatalf("scrape statsd_exporter: %v", err)
	}
	return f
}

// sum adds the values of the samples of metric whose labels include every
// label in match (name, value, name, value...).
func (f families) sum(metric string, match ...string) float64 {
	mf := f[metric]
	if mf == nil {
		return 0
	}
	total := 0.0
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, match...) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

// labelValues lists the values of label among metric's samples.
func (f families) labelValues(metric, label string) map[string]float64 {
	out := map[string]float64{}
	mf := f[metric]
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func hasLabels(m *dto.Metric, match ...string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == match[i] && l.GetValue() == match[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitFor scrapes until cond holds or timeout passes, and returns the last
// scrape and whether cond held.
func (e *exporter) waitFor(t *testing.T, timeout time.Duration, cond func(families) bool) (families, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f, err := e.scrape()
		if err == nil && cond(f) {
			return f, true
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("scrape statsd_exporter: %v", err)
			}
			return f, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exporterErrors lists the exporter's own counters of malformed input that
// are not zero.
func exporterErrors(f families) []string {
	var bad []string
	for _, name := range []string{"statsd_exporter_tag_errors_total", "statsd_exporter_sample_errors_total",
		"statsd_exporter_events_conflict_total", "statsd_exporter_events_error_total",
		"statsd_exporter_tcp_too_long_lines_total", "statsd_exporter_udp_packet_drops_total",
		"statsd_exporter_unixgram_packet_drops_total"} {
		if v := f.sum(name); v != 0 {
			bad = append(bad, fmt.Sprintf("%s=%v", name, v))
		}
	}
	return bad
}

// daemon is a bpfstatd process started by a test.
type daemon struct {
	cmd    *exec.Cmd
	socket string
	done   chan struct{}
	err    error // from Wait, once done is closed
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon runs bpfstatd shipping to output in the statsd_exporter
// dialect, with its own admin socket, and waits until it answers there.
// It kills it on cleanup.
func startDaemon(t *testing.T, output string, args ...string) *daemon {
	t.Helper()
	return startDaemonWith(t, (*exec.Cmd).Start, output, args...)
}

// startDaemonWith is startDaemon with start starting the process (in a
// network namespace, say).
func startDaemonWith(t *testing.T, start func(*exec.Cmd) error, output string, args ...string) *daemon {
	t.Helper()
	d := &daemon{socket: filepath.Join(t.TempDir(), "admin.sock"), done: make(chan struct{}), stderr: &lockedBuffer{}}
	args = append([]string{"--output", output, "--dialect", "statsd_exporter", "--admin-socket", d.socket,
		"--host-tag=false", "--log-format", "json"}, args...)
	d.cmd = exec.Command(daemonBin, args...)
	d.cmd.Stderr = d.stderr
	if err := start(d.cmd); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			// A daemon still running when its test failed may be stuck:
			// SIGQUIT makes the Go runtime print every goroutine's stack.
			select {
			case <-d.done:
			default:
				d.cmd.Process.Signal(syscall.SIGQUIT)
				select {
				case <-d.done:
				case <-time.After(2 * time.Second):
				}
			}
		}
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("bpfstatd (%v) stderr:\n%s", d.err, d.stderr)
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := admin.Query(d.socket); err == nil {
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("bpfstatd exited at start (%v): %s", d.err, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpfstatd did not answer on %s within 15s: %s", d.socket, d.stderr)
		}
	}
}

// query runs a second bpfstatd with the query flags and returns its
// output and exit code.
func (d *daemon) query(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, daemonBin, append(args, "--admin-socket", d.socket)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("bpfstatd %v: %v", args, err)
	}
	return out.String(), 0
}

// drops reads the drop ledger with --drops --json.
func (d *daemon) drops(t *testing.T) ledger {
	t.Helper()
	out, code := d.query(t, "--drops", "--json")
	var l []admin.Drop
	if err := json.Unmarshal([]byte(out), &l); err != nil || code != 0 {
		t.Fatalf("--drops --json: exit %d, %v: %s", code, err, out)
	}
	return ledger(l)
}

// status reads --status --json.
func (d *daemon) status(t *testing.T) admin.Snapshot {
	t.Helper()
	out, code := d.query(t, "--status", "--json")
	var s admin.Snapshot
	if err := json.Unmarshal([]byte(out), &s); err != nil || code != 0 {
		t.Fatalf("--status --json: exit %d, %v: %s", code, err, out)
	}
	return s
}

// terminate sends SIGTERM and waits up to timeout for the daemon to exit.
// It returns how long that took and the exit error.
func (d *daemon) terminate(t *testing.T, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
		return time.Since(start), d.err
	case <-time.After(timeout):
		return time.Since(start), fmt.Errorf("still running %v after SIGTERM", timeout)
	}
}

// rss reads the daemon's resident set size from /proc.
func (d *daemon) rss(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// ledger is the daemon's drop ledger.
type ledger []admin.Drop

// count sums the entries of stage (all if ""), reason (all if "") and
// source (all if "").
func (l ledger) count(stage, reason, source string) uint64 {
	var n uint64
	for _, d := range l {
		if (stage == "" || d.Stage == stage) && (reason == "" || d.Reason == reason) && (source == "" || d.Source == source) {
			n += d.Count
		}
	}
	return n
}

// userLost is every line lost in user space: queue and send drops.
func (l ledger) userLost() uint64 { return l.count("queue", "", "") + l.count("send", "", "") }

// nonZero lists the ledger's entries that are not zero, for messages.
func (l ledger) nonZero() string {
	var s []string
	for _, d := range l {
		if d.Count != 0 {
			s = append(s, fmt.Sprintf("%s/%s/%s=%d", d.Stage, d.Reason, d.Source, d.Count))
		}
	}
	if len(s) == 0 {
		return "all zero"
	}
	return strings.Join(s, " ")
}

// Names of the metrics as statsd_exporter exposes them.
const (
	promExec         = "host_process_exec"
	promExit         = "host_process_exit"
	promRingFull     = "bpfstatd_kernel_ring_full"
	promSampledOut   = "bpfstatd_kernel_sampled_out"
	promDecodeErrors = "bpfstatd_drain_decode_errors"
	promLinesDropped = "bpfstatd_ship_lines_dropped"
)

// selfLost is what the daemon told the receiver, in its own counters, it
// lost: kernel ring full, decode errors and lines dropped in user space.
func selfLost(f families) float64 {
	return f.sum(promRingFull) + f.sum(promDecodeErrors) + f.sum(promLinesDropped)
}

// testTimeout returns d, or the long-form duration when env is set to 1.
func longForm(env string, short, long time.Duration) time.Duration {
	if os.Getenv(env) == "1" {
		return long
	}
	return short
}

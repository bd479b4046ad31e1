package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
)

func noEnv(string) string { return "" }

// TestRunRejectsBadFlags checks that each bad command line fails as a
// usage error naming the flag, before anything touches the kernel: the
// table runs even without privileges, and parsing comes first in Run.
func TestRunRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--output", "udp://localhost"}, "--output"},
		{[]string{"--output", "udp://:8125"}, "--output"},
		{[]string{"--output", "tcp://localhost:8125"}, "--output"},
		{[]string{"--output", "udp://[::1"}, "--output"},
		{[]string{"--flush-interval", "0s"}, "--flush-interval"},
		{[]string{"--flush-interval", "-1s"}, "--flush-interval"},
		{[]string{"--flush-interval", "soon"}, "flush-interval"},
		{[]string{"--poll", "0s"}, "--poll"},
		{[]string{"--max-payload", "10"}, "--max-payload"},
		{[]string{"--output", "udp://127.0.0.1:8125", "--max-payload", "70000"}, "--max-payload"},
		{[]string{"--ring-size", "5000"}, "--ring-size"},
		{[]string{"--wakeup-bytes", "1048576"}, "--wakeup-bytes"},
		{[]string{"--tag", "novalue"}, "--tag"},
		{[]string{"--tag", "k:v|#x"}, "--tag"},
		{[]string{"--tag", "k:a\nb"}, "--tag"},
		{[]string{"--tag", "a:b,c"}, "--tag"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--collectors", "process,disk"}, "--collectors"},
		{[]string{"--collectors", ""}, "--collectors"},
		{[]string{"--collectors", "process", "--syscalls-by-process"}, "--syscalls-by-process"},
		{[]string{"--interfaces", "eth[0"}, "--interfaces"},
		{[]string{"--exclude-interfaces", "[x"}, "--exclude-interfaces"},
		{[]string{"--dialect", "graphite"}, "--dialect"},
		{[]string{"--output", "unix://relative/path"}, "--output"},
		{[]string{"--output", "unix:///run/dsd.sock", "--max-payload", "70000"}, "--max-payload"},
		{[]string{"--max-series", "-1"}, "--max-series"},
		{[]string{"--drop-policy", "random"}, "--drop-policy"},
		{[]string{"--queue-size", "0"}, "--queue-size"},
		{[]string{"--breaker-threshold", "0"}, "--breaker-threshold"},
		{[]string{"--breaker-min-backoff", "0s"}, "--breaker-min-backoff"},
		{[]string{"--breaker-min-backoff", "2s", "--breaker-max-backoff", "1s"}, "--breaker-max-backoff"},
		{[]string{"--max-throttle-level", "9"}, "--max-throttle-level"},
		{[]string{"--health-max-kernel-drops", "2"}, "--health-max-kernel-drops"},
		{[]string{"--json"}, "--json"},
		{[]string{"--health", "--watch"}, "--watch"},
		{[]string{"stray"}, "stray"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := Run(ctx, tc.args, noEnv, io.Discard, io.Discard)
		cancel()
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Run(%q) = %v; want a one-line usage error naming %s", tc.args, err, tc.want)
		}
	}
}

func TestMainExitCodes(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{"--output", "bogus"}, io.Discard, &stderr); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
	if !strings.HasPrefix(stderr.String(), "bpfstatd: invalid --output") {
		t.Errorf("stderr %q", stderr.String())
	}
	stderr.Reset()
	if code := Main(context.Background(), []string{"--help"}, io.Discard, &stderr); code != 0 || !strings.Contains(stderr.String(), "--flush-interval") {
		t.Errorf("--help: exit %d, output %q", code, stderr.String())
	}
}

// TestEnvironment sets flags from BPFSTATD_* unless given on the command
// line, and rejects a bad value naming the variable.
func TestEnvironment(t *testing.T) {
	env := map[string]string{"BPFSTATD_FLUSH_INTERVAL": "5s", "BPFSTATD_OUTPUT": "udp://127.0.0.1:9125", "BPFSTATD_TAG": "env:prod,team:obs", "NODE_NAME": "node-7"}
	cfg, err := parseConfig([]string{"--flush-interval", "2s"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FlushInterval != 2*time.Second || cfg.Output.String() != "udp://127.0.0.1:9125" || strings.Join(cfg.Tags, ",") != "env:prod,team:obs,host:node-7" {
		t.Errorf("config %+v", cfg)
	}
	env["BPFSTATD_POLL"] = "fast"
	_, err = parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "BPFSTATD_POLL") {
		t.Errorf("bad environment value: %v", err)
	}
}

func TestParseOutput(t *testing.T) {
	for in, want := range map[string]string{
		"stdout":               "stdout",
		"-":                    "stdout",
		"udp://127.0.0.1:8125": "udp://127.0.0.1:8125",
		"udp://[::1]:8125":     "udp://[::1]:8125",
		"udp://localhost:1":    "udp://localhost:1",
		"unix:///run/dsd.sock": "unix:///run/dsd.sock",
		"unixgram:///a/b":      "unix:///a/b",
	} {
		o, err := ParseOutput(in)
		if err != nil || o.String() != want {
			t.Errorf("ParseOutput(%q) = %v, %v; want %s", in, o, err, want)
		}
	}
}

// TestUsageGroupsEveryFlag keeps --help complete and grouped: every flag
// of a group is printed, and none is left for the "Other" group.
func TestUsageGroupsEveryFlag(t *testing.T) {
	var out strings.Builder
	if _, err := parseConfig([]string{"--help"}, noEnv, &out); !errors.Is(err, errHelp) {
		t.Fatalf("--help: %v", err)
	}
	grouped := map[string]bool{}
	for _, g := range flagGroups {
		for _, f := range g.flags {
			grouped[f] = true
		}
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(line), "--"); ok {
			name, _, _ := strings.Cut(strings.Fields(f)[0], "[")
			grouped[name] = false
		}
	}
	for f, missing := range grouped {
		if missing {
			t.Errorf("flag --%s is in a group but not printed", f)
		}
	}
	if strings.Count(out.String(), "Usage:") != 1 || !strings.Contains(out.String(), "Querying a running daemon") || strings.Contains(out.String(), "\nOther:") {
		t.Errorf("usage:\n%s", out.String())
	}
}

// TestByProcessRingSize: --syscalls-by-process enlarges the ring unless a
// size is given, on the command line or in the environment.
func TestByProcessRingSize(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want uint32
	}{
		{nil, nil, bpf.DefaultRingSize},
		{[]string{"--syscalls-by-process"}, nil, ByProcessRingSize},
		{[]string{"--syscalls-by-process", "--ring-size", "65536"}, nil, 65536},
		{[]string{"--syscalls-by-process"}, map[string]string{"BPFSTATD_RING_SIZE": "131072"}, 131072},
		{[]string{"--ring-size", "65536"}, nil, 65536},
	} {
		cfg, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if cfg.RingSize != tc.want {
			t.Errorf("%v %v: ring size %d, want %d", tc.args, tc.env, cfg.RingSize, tc.want)
		}
	}
}

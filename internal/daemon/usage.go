package daemon

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// flagGroups orders --help: each group's title and its flags.
var flagGroups = []struct {
	title string
	flags []string
}{
	{"What to collect", []string{"collectors", "syscalls-by-process", "interfaces", "exclude-interfaces"}},
	{"Where and how to ship", []string{"output", "dialect", "flush-interval", "max-payload", "tag", "host-tag", "max-series"}},
	{"Kernel ring buffer", []string{"ring-size", "ring-shards", "wakeup-bytes", "poll"}},
	{"Backpressure, breaker and throttling", []string{"drop-policy", "queue-size", "breaker-threshold", "breaker-min-backoff", "breaker-max-backoff", "max-throttle-level"}},
	{"Health and privileges", []string{"health-max-kernel-drops", "keep-capabilities", "admin-socket"}},
	{"Logging", []string{"log-level", "log-format"}},
	{"Querying a running daemon (through --admin-socket)", []string{"status", "drops", "health", "json", "watch"}},
}

// writeUsage prints --help: the flags by group, then how the environment
// sets them.
func writeUsage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: bpfstatd [flags]\n\nbpfstatd counts host events with eBPF programs and ships them as StatsD/DogStatsD metrics.\nIt needs root, or CAP_BPF and CAP_PERFMON (and CAP_NET_ADMIN for the net collector).\n")
	grouped := map[string]bool{}
	for _, g := range flagGroups {
		group := pflag.NewFlagSet(g.title, pflag.ContinueOnError)
		group.SortFlags = false
		for _, name := range g.flags {
			if f := fs.Lookup(name); f != nil {
				group.AddFlag(f)
				grouped[name] = true
			}
		}
		fmt.Fprintf(w, "\n%s:\n%s", g.title, group.FlagUsages())
	}
	other := pflag.NewFlagSet("other", pflag.ContinueOnError)
	fs.VisitAll(func(f *pflag.Flag) {
		if !grouped[f.Name] && f.Name != "help" {
			other.AddFlag(f)
		}
	})
	if other.HasFlags() {
		fmt.Fprintf(w, "\nOther:\n%s", other.FlagUsages())
	}
	fmt.Fprintf(w, "\nEvery flag can also be set as %s<NAME>, such as %sFLUSH_INTERVAL=5s;\na flag on the command line wins.\n", EnvPrefix, EnvPrefix)
}

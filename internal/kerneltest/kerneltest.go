// Package kerneltest decides whether a test that needs the kernel can run
// here: root or the BPF capabilities, kernel BTF, and the program and map
// types bpfstatd uses.
//
// A test that cannot run is skipped with the reason, unless the environment
// sets BPFSTATD_REQUIRE_KERNEL=1 (as CI does), in which case it fails: CI
// never passes by skipping.
package kerneltest

import (
	"os"
	"testing"

	"github.com/bpfstatd/bpfstatd/bpf"
)

// RequireEnv names the environment variable that turns skips into failures.
const RequireEnv = "BPFSTATD_REQUIRE_KERNEL"

// Require skips tb, or fails it when [RequireEnv] is "1", unless bpfstatd's
// programs can be loaded and attached by this process on this kernel.
func Require(tb testing.TB) {
	tb.Helper()
	if err := bpf.CheckSupport(bpf.KernelBTFPath); err != nil {
		Unavailable(tb, err.Error())
	}
}

// Unavailable skips tb for the given reason, or fails it when [RequireEnv]
// is "1". Use it for a test's own preconditions (a tool such as ip(8)).
func Unavailable(tb testing.TB, reason string) {
	tb.Helper()
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("kernel test cannot run, and %s=1: %s", RequireEnv, reason)
	}
	tb.Skipf("kernel test skipped: %s (set %s=1 to fail instead)", reason, RequireEnv)
}

package shipper

import "golang.org/x/sys/unix"

// monotonicNow returns CLOCK_MONOTONIC in nanoseconds, the clock of the
// kernel's bpf_ktime_get_ns.
func monotonicNow() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

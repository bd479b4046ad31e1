//go:build !linux

package shipper

import "time"

var clockStart = time.Now()

// monotonicNow returns nanoseconds on a monotonic clock; without a kernel
// clock to match, it counts from process start.
func monotonicNow() int64 { return int64(time.Since(clockStart)) }

package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loadComm is the thread name of the load generator's threads: the
// daemon's host.syscalls.by_process metric counts their syscalls under
// comm:loadComm, apart from everything else on the host. It carries the
// bench's process id, so that two benches on one host (make bench and a
// soak) never count each other's calls. Set once, at start.
var loadComm = "bsload-" + strconv.Itoa(os.Getpid())

// A loadResult counts the syscalls the generator made on its thread.
type loadResult struct {
	Calls, Sleeps uint64 // getppid and getpid calls, nanosleep calls (pacing)
	Elapsed       time.Duration
}

// Syscalls is every syscall the thread made in its loop.
func (r loadResult) Syscalls() uint64 { return r.Calls + r.Sleeps }

// runLoad calls getppid and getpid in turn on a thread of its own, named
// loadComm, at rate calls a second (0: as fast as it can) for dur, pacing
// with nanosleep in slices of about 1 ms. No call repeats the one before
// it, so the by-process program writes a record for each (its costliest
// case: a run of one). The thread exits afterwards (the goroutine ends
// locked), so no other goroutine ever runs under the name.
//
// With threads > 1, that many threads share the rate.
func runLoad(rate float64, dur time.Duration, threads int) loadResult {
	return runLoadAs(loadComm, rate, dur, threads)
}

// runLoadAs is runLoad with threads named comm.
func runLoadAs(comm string, rate float64, dur time.Duration, threads int) loadResult {
	out := make(chan loadResult)
	for range threads {
		go loadThread(comm, rate/float64(threads), dur, out)
	}
	var sum loadResult
	for range threads {
		r := <-out
		sum.Calls += r.Calls
		sum.Sleeps += r.Sleeps
		sum.Elapsed = max(sum.Elapsed, r.Elapsed)
	}
	return sum
}

func loadThread(comm string, rate float64, dur time.Duration, out chan<- loadResult) {
	func() {
		runtime.LockOSThread() // never unlocked: the thread exits with us
		// The thread takes its old name back at the end: if it is the
		// process's main thread, which Go keeps instead of ending, its
		// later syscalls (a signal wakes it) must not count as the load's.
		var old [16]byte // TASK_COMM_LEN
		_ = unix.Prctl(unix.PR_GET_NAME, uintptr(unsafe.Pointer(&old[0])), 0, 0, 0)
		name := append([]byte(comm), 0)
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
		var r loadResult
		start := time.Now()
		if rate <= 0 {
			for time.Since(start) < dur {
				for range 2048 {
					unix.Getppid()
					unix.Getpid()
				}
				r.Calls += 4096
			}
		} else {
			const chunk = 1024
			sleep := unix.Timespec{Nsec: 500_000}
			for {
				el := time.Since(start)
				if el >= dur {
					break
				}
				due := uint64(rate*el.Seconds()) - r.Calls
				if due == 0 || int64(due) < 0 {
					// Raw: no scheduler hand-off, whose futex calls
					// would add syscalls the generator cannot count.
					unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&sleep)), 0, 0)
					r.Sleeps++
					continue
				}
				due = min(due, chunk) + 1
				for range due / 2 {
					unix.Getppid()
					unix.Getpid()
				}
				r.Calls += due / 2 * 2
			}
		}
		r.Elapsed = time.Since(start)
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&old[0])), 0, 0, 0)
		out <- r
	}()
}

// receiver is a UDP DogStatsD receiver that counts datagrams and lines and
// sums the by-process syscall counter of the load generator's comm, and
// of the overflow series past the daemon's cardinality budget, where the
// comm's count goes if the host had too many names.
type receiver struct {
	conn                   *net.UDPConn
	datagrams, lines, load atomic.Uint64
	overflow               atomic.Uint64
	bytes                  atomic.Uint64
}

func newReceiver() (*receiver, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(8 << 20)
	r := &receiver{conn: c}
	go r.run()
	return r, nil
}

func (r *receiver) addr() string { return r.conn.LocalAddr().String() }

var (
	byProcessName = []byte("host.syscalls.by_process:")
	loadTag       = []byte("comm:" + loadComm)
	overflowTag   = []byte("comm:bpfstatd_overflow") // shipper.OverflowTagValue
)

func (r *receiver) run() {
	buf := make([]byte, 65536)
	for {
		n, err := r.conn.Read(buf)
		if err != nil {
			return
		}
		r.datagrams.Add(1)
		r.bytes.Add(uint64(n))
		for line := range bytes.SplitSeq(buf[:n], []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			r.lines.Add(1)
			if v, ok := byProcessCount(line, loadTag); ok {
				r.load.Add(v)
			} else if v, ok := byProcessCount(line, overflowTag); ok {
				r.overflow.Add(v)
			}
		}
	}
}

// loadCount returns the value of a host.syscalls.by_process counter line
// tagged with the load generator's comm.
func loadCount(line []byte) (uint64, bool) { return byProcessCount(line, loadTag) }

// byProcessCount returns the value of a host.syscalls.by_process counter
// line with the tag tag.
func byProcessCount(line, tag []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, byProcessName)
	if !ok {
		return 0, false
	}
	val, rest, ok := bytes.Cut(rest, []byte("|"))
	if !ok {
		return 0, false
	}
	_, tags, ok := bytes.Cut(rest, []byte("|#"))
	if !ok {
		return 0, false
	}
	found := false
	for t := range bytes.SplitSeq(tags, []byte(",")) {
		if bytes.Equal(t, tag) {
			found = true
		}
	}
	if !found {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(val), 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return uint64(v + 0.5), true
}

func (r *receiver) close() { r.conn.Close() }

// socketDrops returns the datagrams the kernel dropped for the receiver's
// socket, its buffer full (the drops column of /proc/net/udp): lines the
// daemon sent that the receiver never read.
func (r *receiver) socketDrops() (uint64, error) {
	a := r.conn.LocalAddr().(*net.UDPAddr)
	local := fmt.Sprintf("%08X:%04X", binary.LittleEndian.Uint32(a.IP.To4()), a.Port)
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 13 && f[1] == local {
			return strconv.ParseUint(f[len(f)-1], 10, 64)
		}
	}
	return 0, fmt.Errorf("socket %s not in /proc/net/udp", local)
}

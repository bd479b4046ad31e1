package bpf_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/bpfstatd/bpfstatd/bpf"
	"golang.org/x/sys/unix"
)

// loadRunq loads the run-queue collector with fresh shared maps.
func loadRunq(tb testing.TB) (*bpf.Shared, *bpf.Runq) {
	tb.Helper()
	return loadCollector(tb, bpf.RingOptions{}, bpf.LoadRunq)
}

// schedStat is a task's /proc/<pid>/schedstat: the kernel's own account of
// its waits on a run queue (CONFIG_SCHED_INFO).
type schedStat struct {
	runDelay uint64 // nanoseconds waited on a run queue
	waits    uint64 // times it ran after waiting (pcount)
}

func parseSchedStat(s string) (schedStat, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return schedStat{}, fmt.Errorf("parse schedstat %q: %d fields, want 3", s, len(f))
	}
	delay, err1 := strconv.ParseUint(f[1], 10, 64)
	waits, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return schedStat{}, fmt.Errorf("parse schedstat %q: not numbers", s)
	}
	return schedStat{runDelay: delay, waits: waits}, nil
}

// sumSchedStat adds up the schedstat of tasks ("pid/task/tid").
func sumSchedStat(tb testing.TB, tasks []string) schedStat {
	tb.Helper()
	var sum schedStat
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + task + "/schedstat")
		if err != nil {
			tb.Fatal(err)
		}
		st, err := parseSchedStat(string(b))
		if err != nil {
			tb.Fatal(err)
		}
		sum.runDelay += st.runDelay
		sum.waits += st.waits
	}
	return sum
}

// workerEnv makes the test binary a busy worker (see [runqWorker]).
const workerEnv = "BPFSTATD_RUNQ_WORKER"

// TestMain runs the test binary as a busy worker of [TestRunqLatency] when
// workerEnv is set, and as the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		runqWorker()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runqWorker is the busy worker that [TestRunqLatency] runs as child
// processes: on one thread, whose id it prints first, it spins for 50 µs
// and sleeps for 20 µs, over and over, until killed (or for a minute at
// most, should the test be killed first). Each wakeup puts it on a run
// queue. It sleeps with a raw system call, which Go's runtime does not see,
// so that its monitor thread stays asleep.
func runqWorker() {
	runtime.LockOSThread()
	fmt.Println(unix.Gettid())
	pause := unix.Timespec{Nsec: 20_000}
	for stop := time.Now().Add(time.Minute); time.Now().Before(stop); {
		for end := time.Now().Add(50 * time.Microsecond); time.Now().Before(end); {
		}
		unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&pause)), 0, 0)
	}
}

// startWorkers starts n busy worker processes, which the test's cleanup
// kills, and returns their working threads as "<pid>/task/<tid>".
func startWorkers(tb testing.TB, n int) []string {
	tb.Helper()
	tasks := make([]string, 0, n)
	for range n {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), workerEnv+"=1", "GOMAXPROCS=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			tb.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			tb.Fatalf("start busy worker: %v", err)
		}
		tasks = append(tasks, strconv.Itoa(cmd.Process.Pid)+"/task/"+strings.TrimSpace(line))
	}
	return tasks
}

// readRunq reads r's histogram.
func readRunq(tb testing.TB, r *bpf.Runq) bpf.Hist {
	tb.Helper()
	h, err := r.Read()
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func describe(h *bpf.Hist) string {
	m := h.Median()
	lo, hi := bpf.BucketBounds(m)
	return fmt.Sprintf("%d waits, median bucket %d [%d, %d) ns, buckets %v", h.Count(), m, lo, hi, *h)
}

// TestRunqLatency measures the host's run-queue latency with one busy
// worker, fewer runnable threads than CPUs (an idle host alone gives too
// few waits to compare, dominated by wakeups from idle CPUs), then with
// three times as many busy workers as CPUs: the median bucket must rise. The workers' own waits, as the kernel accounts them in
// /proc/<pid>/task/<tid>/schedstat, must all be in the histogram: at least
// as many waits, and no more time than the buckets' upper bounds allow.
func TestRunqLatency(t *testing.T) {
	sh, r := loadRunq(t)
	if err := r.Attach(); err != nil {
		t.Fatal(err)
	}
	const period = 500 * time.Millisecond

	startWorkers(t, 1)
	h0 := readRunq(t, r)
	time.Sleep(period)
	h1 := readRunq(t, r)
	idle := h1.Sub(&h0)

	workers := startWorkers(t, 3*runtime.NumCPU())
	s2, h2 := sumSchedStat(t, workers), readRunq(t, r)
	time.Sleep(period)
	h3, s3 := readRunq(t, r), sumSchedStat(t, workers)
	busy := h3.Sub(&h2)
	if err := r.Detach(); err != nil {
		t.Fatal(err)
	}

	t.Logf("idle: %s", describe(&idle))
	t.Logf("busy: %s", describe(&busy))
	if idle.Count() == 0 || busy.Count() == 0 || busy.Median() <= idle.Median() {
		t.Errorf("median bucket %d with %d busy workers, %d idle: want it to rise", busy.Median(), len(workers), idle.Median())
	}

	var upper float64 // the most time the busy histogram can hold
	for i, c := range busy {
		_, hi := bpf.BucketBounds(i)
		upper += float64(c) * float64(hi)
	}
	waits, delay := s3.waits-s2.waits, s3.runDelay-s2.runDelay
	t.Logf("workers' schedstat: %d waits, %.1f ms waited (%.2f ms each); histogram: %d waits, at most %.1f ms",
		waits, float64(delay)/1e6, float64(delay)/1e6/float64(max(waits, 1)), busy.Count(), upper/1e6)
	// Slack: a read of the histogram and of the schedstats are not at one
	// instant; each CPU may finish one wait in between.
	slack := uint64(runtime.NumCPU())
	if waits == 0 || busy.Count()+slack < waits || upper*1.05 < float64(delay) {
		t.Errorf("histogram (%d waits, at most %.0f ns) does not hold the workers' %d waits of %d ns",
			busy.Count(), upper, waits, delay)
	}

	l, err := sh.Ledger(bpf.ProgRunq)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("runq ledger %+v", l)
	if !l.Balanced() || l.RingFull != 0 || l.Emitted < h3.Count() {
		t.Errorf("runq ledger %+v: want balanced, nothing lost, at least %d emitted", l, h3.Count())
	}
	// Attaching again forgets the waits noted before Detach.
	if err := r.Attach(); err != nil {
		t.Fatal(err)
	}
	if err := r.Detach(); err != nil {
		t.Fatal(err)
	}
}

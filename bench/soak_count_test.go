package main

import (
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

func TestParseCPUList(t *testing.T) {
	got, err := parseCPUList("0-2,5")
	if err != nil || !slices.Equal(got, []int{0, 1, 2, 5}) {
		t.Errorf("parseCPUList = %v, %v", got, err)
	}
	if _, err := parseCPUList("0-x"); err == nil {
		t.Error("parseCPUList(0-x) did not fail")
	}
}

// TestCommCounter checks the kernel counts at least the generator's own
// syscalls under its name, and only a few more (the runtime's).
func TestCommCounter(t *testing.T) {
	if os.Geteuid() != 0 {
		kerneltest.Unavailable(t, "perf counters on every CPU need root")
	}
	c, err := newCommCounter(soakComm)
	if err != nil {
		kerneltest.Unavailable(t, err.Error())
	}
	defer c.close()
	r := runLoadAs(soakComm, 50_000, 500*time.Millisecond, 1)
	n, err := c.count()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generator counted %d syscalls, the kernel %d", r.Syscalls(), n)
	if n < r.Syscalls() || n > r.Syscalls()+r.Syscalls()/100 {
		t.Errorf("kernel counted %d syscalls named %s, the generator made %d", n, soakComm, r.Syscalls())
	}
}

// TestCommCounterFiltered checks the counter counts nothing but the
// name's syscalls from the moment it exists: a counter enabled before its
// filter is set also counts the syscalls of everyone in between, its own
// ioctl's included.
func TestCommCounterFiltered(t *testing.T) {
	if os.Geteuid() != 0 {
		kerneltest.Unavailable(t, "perf counters on every CPU need root")
	}
	for range 20 {
		c, err := newCommCounter("bsnobody" + soakComm)
		if err != nil {
			kerneltest.Unavailable(t, err.Error())
		}
		for range 100 {
			unix.Getppid()
		}
		n, err := c.count()
		c.close()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("a counter of a name no thread has counted %d syscalls", n)
		}
	}
}

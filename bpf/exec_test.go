package bpf_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// helperBinary copies /bin/true to a file with a name no other process
// uses, so that the test can tell its own execs from the host's.
func helperBinary(tb testing.TB) (path, name string) {
	tb.Helper()
	var b [4]byte
	rand.Read(b[:])
	name = "bpfst-" + hex.EncodeToString(b[:]) // 14 bytes: under TASK_COMM_LEN
	dir, err := os.MkdirTemp("", "bpfstatd-test-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	src, err := os.Open("/bin/true")
	if err != nil {
		kerneltest.Unavailable(tb, "no /bin/true to exec: "+err.Error())
	}
	defer src.Close()
	path = filepath.Join(dir, name)
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		tb.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		tb.Fatal(err)
	}
	return path, name
}

// drainAll runs a drainer of e's ring until stop is called, which returns
// once everything queued has been handed to emit.
func drainAll(tb testing.TB, e *bpf.Exec, emit func(*bpf.ExecRecord)) (stop func() ringbuf.DrainStats) {
	tb.Helper()
	d, err := ringbuf.NewDrainer(e.Events(), bpf.DecodeExec, ringbuf.DrainOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, emit) }()
	return func() ringbuf.DrainStats {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("drain: %v", err)
		}
		st := d.Stats()
		d.Close()
		return st
	}
}

// TestExecCountsEveryExec execs a uniquely named helper N times and expects
// exactly N records with that name, one from each child's pid.
func TestExecCountsEveryExec(t *testing.T) {
	kerneltest.Require(t)
	path, name := helperBinary(t)

	e, err := bpf.LoadExec(bpf.RingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	seen := make(map[uint32]int) // tgid -> records with our name
	stop := drainAll(t, e, func(r *bpf.ExecRecord) {
		if string(r.Name()) == name {
			seen[r.TGID]++
			if r.PID != r.TGID || r.Rate != 1 || r.TimeNS == 0 {
				t.Errorf("record %+v: want pid == tgid, rate 1, a timestamp", r)
			}
		}
	})
	if err := e.Attach(); err != nil {
		t.Fatal(err)
	}

	const n = 64
	var pids []int
	for range n {
		cmd := exec.Command(path)
		if err := cmd.Run(); err != nil {
			t.Fatalf("run %s: %v", path, err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	if err := e.Detach(); err != nil {
		t.Fatal(err)
	}
	stats := stop()

	total := 0
	for _, c := range seen {
		total += c
	}
	if total != n {
		t.Errorf("drained %d exec records named %q, want %d", total, name, n)
	}
	for _, pid := range pids {
		if seen[uint32(pid)] != 1 {
			t.Errorf("child %d has %d records, want 1", pid, seen[uint32(pid)])
		}
	}
	ledger, err := e.Ledger()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ledger %+v, drained %+v", ledger, stats)
	if ledger.Seen != ledger.Emitted+ledger.RingFull+ledger.SampledOut {
		t.Errorf("ledger does not balance: %+v", ledger)
	}
	if ledger.Emitted != stats.Records || stats.DecodeErrors != 0 {
		t.Errorf("kernel emitted %d records, drained %d with %d decode errors", ledger.Emitted, stats.Records, stats.DecodeErrors)
	}
	if ledger.RingFull != 0 {
		t.Errorf("ring full %d times with a running reader", ledger.RingFull)
	}
}

// TestExecRingFull fills a one-page ring while no reader runs: the records
// that did not fit are counted as ring-full, and the ledger balances with
// what a reader then drains.
func TestExecRingFull(t *testing.T) {
	kerneltest.Require(t)
	path, _ := helperBinary(t)
	page := uint32(os.Getpagesize())
	e, err := bpf.LoadExec(bpf.RingOptions{Size: page, WakeupBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Attach(); err != nil {
		t.Fatal(err)
	}
	capacity := int(page) / (bpf.ExecRecordSize + 8) // 8-byte kernel header per record
	for range capacity + 20 {
		if err := exec.Command(path).Run(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Detach(); err != nil {
		t.Fatal(err)
	}
	stats := drainAll(t, e, func(*bpf.ExecRecord) {})()
	ledger, err := e.Ledger()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ring of %d records: ledger %+v, drained %d", capacity, ledger, stats.Records)
	if ledger.RingFull < 20 {
		t.Errorf("ring full %d times, want at least 20", ledger.RingFull)
	}
	if ledger.Seen != ledger.Emitted+ledger.RingFull || ledger.Emitted != stats.Records {
		t.Errorf("ledger %+v does not balance with %d drained", ledger, stats.Records)
	}
}

// TestLoadExecRejectsBadRing checks the ring size before loading.
func TestLoadExecRejectsBadRing(t *testing.T) {
	for _, size := range []uint32{1000, 3 << 12} {
		if e, err := bpf.LoadExec(bpf.RingOptions{Size: size}); err == nil {
			e.Close()
			t.Errorf("LoadExec accepted a ring of %d bytes", size)
		}
	}
}

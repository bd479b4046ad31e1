package bpf_test

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// TestRingShards gives each CPU a ring of its own and, on each CPU, has a
// thread pinned there and named for it call a rare syscall N times: the
// calls of each thread arrive, exactly N, through its CPU's ring and no
// other; the shared ring stays empty; and the ledger balances with the
// records drained from all the rings.
func TestRingShards(t *testing.T) {
	sh, c := loadSyscalls(t, bpf.RingOptions{Size: 64 << 10, Shards: true})
	rings := sh.Shards()
	if len(rings) < runtime.NumCPU() {
		t.Fatalf("%d ring shards for %d CPUs", len(rings), runtime.NumCPU())
	}
	const n = 500
	names := make([]string, runtime.NumCPU())
	for cpu := range names {
		names[cpu] = uniqueThreadName()
	}
	// got[ring][cpu]: calls by the thread of cpu, read from ring; the
	// last ring is the shared one.
	got := make([][]int, len(rings)+1)
	var drained uint64
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	drain := func(ring int, m *ebpf.Map) {
		got[ring] = make([]int, len(names))
		d, err := ringbuf.NewDrainer(m, bpf.DecodeRecord, ringbuf.DrainOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var rec bpf.SyscallRecord
		wg.Go(func() {
			defer d.Close()
			err := d.Run(ctx, func(r *bpf.Record) {
				if r.Syscall(&rec) != nil || rec.Nr != rareSyscall {
					return
				}
				for cpu, name := range names {
					if string(rec.Name()) == name {
						got[ring][cpu] += int(rec.Count)
					}
				}
			})
			if err != nil {
				t.Errorf("drain ring %d: %v", ring, err)
			}
			mu.Lock()
			drained += d.Stats().Records
			mu.Unlock()
		})
	}
	for i, m := range rings {
		drain(i, m)
	}
	drain(len(rings), sh.Events()) // nothing goes there

	if err := c.SetByProcess(true); err != nil {
		t.Fatal(err)
	}
	if err := c.Attach(); err != nil {
		t.Fatal(err)
	}
	for cpu, name := range names {
		onNamedThread(t, name, func() error {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return err
			}
			return callRare(n, 0)
		})
	}
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()

	for ring := range got {
		for cpu, k := range got[ring] {
			want := 0
			if ring == cpu {
				want = n
			}
			if k != want {
				t.Errorf("ring %d: %d calls of the thread on cpu %d, want %d", ring, k, cpu, want)
			}
		}
	}
	l, err := sh.Ledger(bpf.ProgSyscallProc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ledger %+v; %d records drained from %d rings", l, drained, len(rings))
	if !l.Balanced() || l.RingFull != 0 || l.Pending != 0 || l.Records != drained {
		t.Errorf("ledger %+v, %d records drained: want balanced, nothing lost or pending, every record drained", l, drained)
	}
}

package daemon

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/ringbuf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// testSyscalls is the syscalls source without its kernel side: records
// only, no counters to read.
// testSyscalls is the syscalls source without the kernel: its collector is
// a fakeCollector.
type testSyscalls struct {
	*syscallSource
	fake *fakeCollector
}

func (testSyscalls) read(*shipper.Aggregator) error { return nil }
func (s testSyscalls) collector() bpf.Collector     { return s.fake }

// fakeCollector is a collector that loads nothing and reports the misses
// it is told to.
type fakeCollector struct {
	name   string
	misses uint64
}

func (c *fakeCollector) Name() string            { return c.name }
func (c *fakeCollector) Attach() error           { return nil }
func (c *fakeCollector) Detach() error           { return nil }
func (c *fakeCollector) Close() error            { return nil }
func (c *fakeCollector) Misses() (uint64, error) { return c.misses, nil }

// fakeKernel stands for the kernel ledger and the drain in flush.
type fakeKernel struct{ drain ringbuf.DrainStats }

func (fakeKernel) Ledgers() ([]bpf.Ledger, error) { return nil, nil }
func (k fakeKernel) Stats() ringbuf.DrainStats    { return k.drain }
func (fakeKernel) Fill() float64                  { return 0 }

// syscallRecord returns a decoded syscall record of a thread named comm,
// taken at sampling rate.
// syscallRecord returns a run of count syscalls by comm, taken at rate.
func syscallRecord(tb testing.TB, comm string, rate, count uint32) bpf.Record {
	tb.Helper()
	b := make([]byte, bpf.SyscallRecordSize)
	binary.LittleEndian.PutUint32(b, uint32(bpf.KindSyscall))
	binary.LittleEndian.PutUint32(b[4:], rate)
	binary.LittleEndian.PutUint32(b[bpf.HeaderSize:], 39) // getpid
	binary.LittleEndian.PutUint32(b[bpf.HeaderSize+12:], count)
	copy(b[bpf.HeaderSize+16:], comm)
	var r bpf.Record
	if err := bpf.DecodeRecord(b, &r); err != nil {
		tb.Fatal(err)
	}
	return r
}

// newTestPipeline returns a pipeline of the syscalls source shipping
// DogStatsD lines to w.
func newTestPipeline(tb testing.TB, w io.Writer) *pipeline {
	tb.Helper()
	ship, err := shipper.NewWriter(w, shipper.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	src := testSyscalls{syscallSource: &syscallSource{}, fake: &fakeCollector{name: "syscalls"}}
	p, err := newPipeline(ship, []source{src}, Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// byProcess sums the host.syscalls.by_process lines of out by comm.
func byProcess(tb testing.TB, out string) map[string]int64 {
	tb.Helper()
	sums := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), MetricSyscallsByProcess+":")
		if !ok {
			continue
		}
		val, tags, _ := strings.Cut(rest, "|c|#")
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			tb.Fatalf("line %q", sc.Text())
		}
		comm, _, _ := strings.Cut(strings.TrimPrefix(tags, "comm:"), ",")
		sums[comm] += n
	}
	return sums
}

// TestPipelineFinalFlushShipsShed: under throttle, low-priority series
// (by_process) ship only every 2^level intervals; the flush at shutdown
// ships what they deferred instead of leaving it unsent and uncounted.
func TestPipelineFinalFlushShipsShed(t *testing.T) {
	for _, level := range []shipper.Level{1, 2, 3} {
		var out bytes.Buffer
		p := newTestPipeline(t, &out)
		comms := []string{"bsload", "a", "b", "c", "d", "e", "f", "g"}
		want := map[string]int64{}
		for interval := range 5 {
			var batch []bpf.Record
			for i, c := range comms {
				r := syscallRecord(t, c, uint32(1+i%4), uint32(1+i%3))
				for range interval + 1 {
					batch = append(batch, r)
					want[c] += int64(r.Rate) * int64(1+i%3)
				}
			}
			for i := range batch {
				p.add(&batch[i])
			}
			if _, err := p.flush(fakeKernel{}, fakeKernel{}, level, false); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.flush(fakeKernel{}, fakeKernel{}, level, true); err != nil {
			t.Fatal(err)
		}
		got := byProcess(t, out.String())
		for _, c := range comms {
			if got[c] != want[c] {
				t.Errorf("level %d: %s shipped %d, recorded %d", level, c, got[c], want[c])
			}
		}
	}
}

// TestPipelineEvictExact: by-process series of names that go idle are
// evicted and their keys reused by the next names, while the key cache
// still holds the old names; a name that comes back after its eviction
// gets a series of its own. Every record counts once, under its comm.
func TestPipelineEvictExact(t *testing.T) {
	var out bytes.Buffer
	p := newTestPipeline(t, &out)
	steady := syscallRecord(t, "steady", 2, 1)
	want := map[string]int64{}
	burst := func(comm string) {
		r := syscallRecord(t, comm, 1, 1)
		for range 500 {
			p.add(&r)
		}
		want[comm] += 500
		// Past IdleIntervals: comm's series is evicted, steady's kept.
		for range 62 {
			for range 4 {
				p.add(&steady)
			}
			want["steady"] += 4 * 2
			if _, err := p.flush(fakeKernel{}, fakeKernel{}, 0, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, comm := range []string{"burst-0", "burst-1", "burst-2", "burst-0"} {
		burst(comm)
	}
	if _, err := p.flush(fakeKernel{}, fakeKernel{}, 0, true); err != nil {
		t.Fatal(err)
	}
	if ev := p.in.Stats().Evicted; ev != 4 {
		t.Errorf("%d series evicted, want 4", ev)
	}
	got := byProcess(t, out.String())
	for c, n := range want {
		if got[c] != n {
			t.Errorf("%s: shipped %d, recorded %d", c, got[c], n)
		}
	}
}

// TestPipelineSelfDrops: the events lost records stood for, events the
// kernel did not run a program for, records the drain could not hand on,
// and records it never read ship as bpfstatd.drops; the last only from the
// final flush, when the ring is known to be drained.
func TestPipelineSelfDrops(t *testing.T) {
	var out bytes.Buffer
	p := newTestPipeline(t, &out)
	fake := p.srcs[0].collector().(*fakeCollector)
	// The exec program wrote 20 records and the by-process program 500
	// events in 4 runs; the drain read 19 and 2 bad ones. The counting
	// program's emitted (100) writes no record.
	ledgers := make(ledgerOf, bpf.ProgSyscalls+1)
	ledgers[bpf.ProgExec] = bpf.Ledger{Seen: 23, Emitted: 20, Records: 20, RingFull: 3, RingFullEvents: 12}
	ledgers[bpf.ProgSyscallProc] = bpf.Ledger{Seen: 500, Emitted: 500, Records: 4}
	ledgers[bpf.ProgSyscalls] = bpf.Ledger{Seen: 100, Emitted: 100}
	k := fakeKernel{drain: ringbuf.DrainStats{Dropped: 7, Records: 19, DecodeErrors: 2}}

	fake.misses = 4
	iv, err := p.flush(ledgers, k, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if iv.unread != 0 || !strings.Contains(out.String(), MetricDrops+":0|c|#stage:drain,reason:unread\n") {
		t.Errorf("an interval while the programs run counted %d unread, shipped\n%s", iv.unread, out.String())
	}
	out.Reset()
	fake.misses = 9
	if iv, err = p.flush(ledgers, k, 0, true); err != nil {
		t.Fatal(err)
	}
	if iv.unread != 3 || iv.misses[0] != 9 {
		t.Errorf("final flush: unread %d, misses %v; want 3, [9]", iv.unread, iv.misses)
	}
	for _, line := range []string{
		MetricDrops + ":5|c|#stage:kernel,reason:not_run", // 9 - 4
		MetricDrops + ":3|c|#stage:drain,reason:unread",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("no line %q in\n%s", line, out.String())
		}
	}
}

// TestPipelineKernelDrops: the first interval ships the events lost
// records stood for and the records the drain could not hand on.
func TestPipelineKernelDrops(t *testing.T) {
	var out bytes.Buffer
	p := newTestPipeline(t, &out)
	k := fakeKernel{drain: ringbuf.DrainStats{Dropped: 7}}
	if _, err := p.flush(ledgerOf{{RingFull: 3, RingFullEvents: 12}}, k, 0, true); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		MetricDrops + ":12|c|#stage:kernel,reason:ring_full_events",
		MetricDrops + ":7|c|#stage:user_ring,reason:dropped",
		MetricRingFull + ":3|c",
	} {
		if !strings.Contains(out.String(), line+"\n") {
			t.Errorf("no line %q in\n%s", line, out.String())
		}
	}
}

type ledgerOf []bpf.Ledger

func (l ledgerOf) Ledgers() ([]bpf.Ledger, error) { return l, nil }

// TestPipelineRecordAllocs: records of names seen before allocate
// nothing.
func TestPipelineRecordAllocs(t *testing.T) {
	p := newTestPipeline(t, io.Discard)
	recs := benchRecords(t)
	for i := range recs {
		p.add(&recs[i])
	}
	if n := testing.AllocsPerRun(100, func() {
		for i := range recs {
			p.add(&recs[i])
		}
	}); n != 0 {
		t.Errorf("%v allocations per %d records", n, len(recs))
	}
}

func benchRecords(tb testing.TB) []bpf.Record {
	comms := []string{"bsload", "kworker/0:1", "systemd-journal", "go", "sshd", "containerd-shim", "bash", "node"}
	recs := make([]bpf.Record, ringbuf.DrainBatch)
	for i := range recs {
		recs[i] = syscallRecord(tb, comms[i%len(comms)], 1, 1)
	}
	return recs
}

// BenchmarkPipelineRecord is the daemon's per-record cost past the drain:
// aggregating syscall records of a few thread names.
func BenchmarkPipelineRecord(b *testing.B) {
	p := newTestPipeline(b, io.Discard)
	recs := benchRecords(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.add(&recs[i%len(recs)])
		i++
	}
}

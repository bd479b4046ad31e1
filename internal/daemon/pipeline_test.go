package daemon

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/ringbuf"
	"github.com/bpfstatd/bpfstatd/shipper"
)

// testSyscalls is the syscalls source without its kernel side: records
// only, no counters to read.
type testSyscalls struct{ *syscallSource }

func (testSyscalls) read(*shipper.Aggregator) error { return nil }

// fakeKernel stands for the kernel ledger and the drain in flush.
type fakeKernel struct{ drain ringbuf.DrainStats }

func (fakeKernel) Ledgers() ([]bpf.Ledger, error) { return nil, nil }
func (k fakeKernel) Stats() ringbuf.DrainStats    { return k.drain }
func (fakeKernel) Fill() float64                  { return 0 }

// syscallRecord returns a decoded syscall record of a thread named comm,
// taken at sampling rate.
func syscallRecord(tb testing.TB, comm string, rate uint32) bpf.Record {
	tb.Helper()
	b := make([]byte, bpf.SyscallRecordSize)
	binary.LittleEndian.PutUint32(b, uint32(bpf.KindSyscall))
	binary.LittleEndian.PutUint32(b[4:], rate)
	binary.LittleEndian.PutUint32(b[bpf.HeaderSize:], 39) // getpid
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
	p, err := newPipeline(ship, []source{testSyscalls{&syscallSource{}}}, Config{})
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
				r := syscallRecord(t, c, uint32(1+i%4))
				for range interval + 1 {
					batch = append(batch, r)
					want[c] += int64(r.Rate)
				}
			}
			p.addBatch(batch)
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

// TestPipelineConsume pushes records into the ring from another goroutine,
// as the drainer does, with flushes running alongside and idle series
// evicted between bursts: every record is counted once, under its comm.
func TestPipelineConsume(t *testing.T) {
	var out bytes.Buffer
	p := newTestPipeline(t, &out)
	r, err := ringbuf.NewRing[bpf.Record](64, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { p.consume(r, drained, time.Millisecond) })

	want := map[string]int64{}
	const bursts = 3
	for burst := range bursts {
		comm := "burst-" + strconv.Itoa(burst) // each burst's name goes idle after it
		recs := []bpf.Record{syscallRecord(t, comm, 1), syscallRecord(t, "steady", 2)}
		for i := range 5000 {
			rec := recs[i%2]
			if _, err := r.PushBatchWait(t.Context(), []bpf.Record{rec}); err != nil {
				t.Fatal(err)
			}
			want[strings.TrimRight(string(rec.Bytes()[bpf.HeaderSize+16:]), "\x00")] += int64(rec.Rate)
		}
		for r.Len() > 0 {
			time.Sleep(time.Millisecond)
		}
		// Flushes past IdleIntervals, so that the burst's series is evicted
		// and its key reused by the next burst's name.
		for range 62 {
			if _, err := p.flush(fakeKernel{}, fakeKernel{}, 0, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(drained)
	wg.Wait()
	if _, err := p.flush(fakeKernel{}, fakeKernel{}, 0, true); err != nil {
		t.Fatal(err)
	}
	if ev := p.in.Stats().Evicted; ev < bursts-1 {
		t.Errorf("%d series evicted, want at least %d", ev, bursts-1)
	}
	got := byProcess(t, out.String())
	for c, n := range want {
		if got[c] != n {
			t.Errorf("%s: shipped %d, pushed %d", c, got[c], n)
		}
	}
}

// TestPipelineSelfDrops: the events lost records stood for, and records
// the drain could not hand on, ship as bpfstatd.drops.
func TestPipelineSelfDrops(t *testing.T) {
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

// TestPipelineRecordAllocs: a batch of records of names seen before
// allocates nothing.
func TestPipelineRecordAllocs(t *testing.T) {
	p := newTestPipeline(t, io.Discard)
	recs := benchRecords(t)
	p.addBatch(recs)
	if n := testing.AllocsPerRun(100, func() { p.addBatch(recs) }); n != 0 {
		t.Errorf("%v allocations per batch of %d records", n, len(recs))
	}
}

func benchRecords(tb testing.TB) []bpf.Record {
	comms := []string{"bsload", "kworker/0:1", "systemd-journal", "go", "sshd", "containerd-shim", "bash", "node"}
	recs := make([]bpf.Record, ringbuf.DrainBatch)
	for i := range recs {
		recs[i] = syscallRecord(tb, comms[i%len(comms)], 1)
	}
	return recs
}

// BenchmarkPipelineRecord is the daemon's per-record cost past the drain:
// aggregating syscall records of a few thread names, a batch at a time.
func BenchmarkPipelineRecord(b *testing.B) {
	p := newTestPipeline(b, io.Discard)
	recs := benchRecords(b)
	b.ReportAllocs()
	for b.Loop() {
		p.addBatch(recs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

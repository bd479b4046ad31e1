package ringbuf_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// drainChunk is the number of records one op of the drain benchmarks
// delivers while the kernel produces.
const drainChunk = 32768

// BenchmarkDrain moves records from a kernel ring into a Ring[testRecord]
// with [ringbuf.Drainer.RunInto], while a consumer goroutine pops them and
// checks their order.
//
//   - backlog: the kernel ring (4 MiB, 128 K records) is filled with
//     records that do not wake the reader, then a wakeup is forced; an op
//     starts when the consumer has popped the first batch and ends when it
//     has popped every record. The drainer is locked to CPU 0, the
//     consumer (the benchmark goroutine) to CPU 1. wake-µs is the time
//     from the forced wakeup to the first batch, off the clock: on a
//     shared machine it is mostly the wait for CPU 0. The peers read
//     the same backlog on one goroutine with cilium's Reader and the
//     decoder alone, with no user ring: backlog-readinto with ReadInto
//     into one reused record, backlog-read with Read, a new record each
//     read.
//   - producing: a program on CPU 1 writes records (16 per test run) while
//     the drainer, locked to CPU 0, drains them, and the consumer, also on
//     CPU 0, pops them; an op is 32 K records received. timer: the program never wakes the reader, which reads a
//     16 MiB ring every 10 ms. wakeup: the production defaults, a 256 KiB
//     ring whose writer forces a wakeup past a quarter full, and a 10 ms
//     timer. reader-ns/record is the drain thread's CPU time per record.
func BenchmarkDrain(b *testing.B) {
	b.Run("backlog", benchBacklog)
	b.Run("backlog-readinto", func(b *testing.B) { benchBacklogCilium(b, true) })
	b.Run("backlog-read", func(b *testing.B) { benchBacklogCilium(b, false) })
	b.Run("producing/timer", func(b *testing.B) { benchProducing(b, 16<<20, writerOptions{}) })
	b.Run("producing/wakeup", func(b *testing.B) { benchProducing(b, 256<<10, writerOptions{wakeup: 64 << 10}) })
}

// backlogSize is the size of the kernel ring of the backlog benchmarks.
const backlogSize = 4 << 20

// fillBacklog fills the ring w writes to (backlogSize bytes) but for room
// for one run of w, and returns the number of records written in all so
// far.
func fillBacklog(b *testing.B, w *writer) uint64 {
	w.write(backlogSize/32/64 - 1) // 32 bytes a record with its header, 64 a run
	written, full := w.total()
	if full != 0 {
		b.Fatalf("%d records found the ring full", full)
	}
	return written
}

func benchBacklog(b *testing.B) {
	needTwoCPUs(b)
	events := newRingBuf(b, backlogSize)
	w := newWriter(b, events, writerOptions{burst: 64})
	// kick writes one record of an unknown kind, forcing a wakeup.
	kick := newWriter(b, events, writerOptions{kind: 2, wakeup: 1})
	d := newDrainer(b, events, ringbuf.DrainOptions{Poll: time.Hour})
	r, err := ringbuf.NewRing[testRecord](8192, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	var readerCPU time.Duration
	drained := onCPU(0, func() {
		start := threadCPU()
		runErr = d.RunInto(ctx, r)
		readerCPU = threadCPU() - start
	})
	pinTo(1) // the consumer, and the writer

	c := newSeqCheck()
	buf := make([]testRecord, 256)
	idle := busyPoll
	pop := func() int {
		n := r.PopBatch(buf)
		for i := range buf[:n] {
			c.see(&buf[i])
		}
		if n == 0 {
			idle.wait()
		}
		return n
	}
	var timed uint64
	var wake time.Duration
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		want := fillBacklog(b, w)
		start := time.Now()
		kick.write(1)
		for pop() == 0 {
		}
		wake += time.Since(start)
		from := c.received
		b.StartTimer()
		for deadline := time.Now().Add(10 * time.Second); c.received < want; {
			if pop() == 0 && idle.empty%1024 == 0 && time.Now().After(deadline) {
				b.Fatalf("received %d of %d records", c.received, want)
			}
		}
		timed += c.received - from
	}
	elapsed := b.Elapsed()
	cancel()
	popUntil(r.PopBatch, c, drained)
	if runErr != nil {
		b.Fatal(runErr)
	}
	c.check(b, w, 0)
	b.ReportMetric(float64(timed)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(timed), "ns/record")
	b.ReportMetric(float64(wake.Microseconds())/float64(b.N), "wake-µs")
	b.ReportMetric(float64(readerCPU.Nanoseconds())/float64(c.received), "reader-ns/record")
}

// benchBacklogCilium drains the backlog with cilium's Reader alone, on the
// benchmark goroutine: with ReadInto into one reused record, or with Read,
// which allocates a record for every read.
func benchBacklogCilium(b *testing.B, into bool) {
	needTwoCPUs(b)
	events := newRingBuf(b, backlogSize)
	w := newWriter(b, events, writerOptions{burst: 64})
	rd, err := cebpf.NewReader(events)
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	var rec cebpf.Record
	var item testRecord
	var drained uint64
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		fillBacklog(b, w)
		b.StartTimer()
		// A deadline in the past: read what is there, then return.
		rd.SetDeadline(time.Unix(1, 0))
		for {
			var err error
			if into {
				err = rd.ReadInto(&rec)
			} else {
				rec, err = rd.Read()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if decodeTestRecord(rec.RawSample, &item) == nil {
				drained++
			}
		}
	}
	reportRate(b, drained)
}

// reportRate reports records/s and ns/record over the benchmark's time.
func reportRate(b *testing.B, records uint64) {
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records), "ns/record")
}

// needTwoCPUs skips b unless two CPUs can run its goroutines at once: the
// drain benchmarks put the drainer, the consumer and the writer on
// different CPUs. (A b.Loop benchmark runs at the default GOMAXPROCS
// whatever -cpu says.)
func needTwoCPUs(b *testing.B) {
	if runtime.NumCPU() < 2 || runtime.GOMAXPROCS(0) < 2 {
		b.Skip("needs two CPUs and GOMAXPROCS of 2 or more")
	}
}

// pinTo locks the calling goroutine to its thread and the thread to cpu,
// for good: call it only on a goroutine that ends with the benchmark, such
// as the benchmark's own, so that the thread ends too.
func pinTo(cpu int) {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	_ = unix.SchedSetaffinity(0, &set)
}

// threadCPU returns the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// processCPU returns the CPU time the process has used.
func processCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// producer runs w on cpu, a test run of repeat runs after another, until
// stop is set, and adds its thread's CPU time to cpuTime.
func producer(b *testing.B, w *writer, cpu int, repeat uint32, stop *atomic.Bool, cpuTime *atomic.Int64) <-chan struct{} {
	return onCPU(cpu, func() {
		start := threadCPU()
		for !stop.Load() {
			if err := w.run(repeat); err != nil {
				b.Error(err)
				break
			}
		}
		cpuTime.Add(int64(threadCPU() - start))
	})
}

// popChunks is the benchmark loop of the producing benchmarks: an op pops
// drainChunk records with pop, checking each with c. It returns the
// records popped in the loop.
func popChunks(b *testing.B, pop func([]testRecord) int, c *seqCheck) uint64 {
	buf := make([]testRecord, 256)
	w := idle
	var got, total uint64
	b.ReportAllocs()
	for b.Loop() {
		for got < drainChunk {
			n := pop(buf)
			for i := range buf[:n] {
				c.see(&buf[i])
			}
			got += uint64(n)
			if n == 0 {
				w.wait()
			} else {
				w.empty = 0
			}
		}
		got -= drainChunk
		total += drainChunk
	}
	return total
}

// popUntil pops with pop, checking each record with c, until done is closed
// and pop finds nothing.
func popUntil(pop func([]testRecord) int, c *seqCheck, done <-chan struct{}) {
	buf := make([]testRecord, 256)
	for {
		stopped := false
		select {
		case <-done:
			stopped = true
		default:
		}
		n := pop(buf)
		for i := range buf[:n] {
			c.see(&buf[i])
		}
		if n == 0 {
			if stopped {
				return
			}
			time.Sleep(20 * time.Microsecond)
		}
	}
}

func benchProducing(b *testing.B, size uint32, o writerOptions) {
	needTwoCPUs(b)
	events := newRingBuf(b, size)
	o.burst = 16
	w := newWriter(b, events, o)
	d := newDrainer(b, events, ringbuf.DrainOptions{Poll: 10 * time.Millisecond})
	r, err := ringbuf.NewRing[testRecord](8192, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var readerCPU time.Duration
	var runErr error
	drained := onCPU(0, func() {
		start := threadCPU()
		runErr = d.RunInto(ctx, r)
		readerCPU = threadCPU() - start
	})
	var stop atomic.Bool
	var producerCPU atomic.Int64
	produced := producer(b, w, 1, 1<<16, &stop, &producerCPU)
	pinTo(0) // the consumer shares CPU 0 with the drainer

	c := newSeqCheck()
	records := popChunks(b, r.PopBatch, c)
	elapsed := b.Elapsed()

	stop.Store(true)
	<-produced
	cancel()
	popUntil(r.PopBatch, c, drained)
	if runErr != nil {
		b.Fatal(runErr)
	}
	st := d.Stats()
	c.check(b, w, 0)
	_, full := w.total()
	if b.Failed() {
		b.Logf("drain %+v, ring %+v", st, r.Stats())
	}
	b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(readerCPU.Nanoseconds())/float64(st.Records), "reader-ns/record")
	b.ReportMetric(100*float64(full)/float64(full+st.Records), "lost-%")
}

// BenchmarkShards has both CPUs write records at once (16 per test run),
// into one 2 MiB kernel ring drained by one Drainer into one Ring, or into
// two 1 MiB rings, one per CPU, drained by a ShardedDrainer into two
// Lanes. Writers force a wakeup past a quarter of their ring; readers poll
// every 10 ms. An op is 32 K records received by the consumer.
// producer-ns/record is the writers' CPU time per record they tried to
// write, drain-ns/record the rest of the process's CPU time (drain and
// consume) per record drained, and lost-% the records the kernel could not
// write because a ring was full.
func BenchmarkShards(b *testing.B) {
	b.Run("single", func(b *testing.B) { benchShards(b, false) })
	b.Run("sharded", func(b *testing.B) { benchShards(b, true) })
}

func benchShards(b *testing.B, sharded bool) {
	needTwoCPUs(b)
	const total = 2 << 20
	var (
		w     *writer
		pop   func([]testRecord) int
		run   func(context.Context) error
		stats func() ringbuf.DrainStats
	)
	opts := ringbuf.DrainOptions{Poll: 10 * time.Millisecond}
	if sharded {
		outer, rings := newShards(b, total/2)
		w = newShardWriter(b, outer, writerOptions{burst: 16, wakeup: total / 8})
		s, err := ringbuf.NewShardedDrainer(rings, decodeTestRecord, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		lanes, err := ringbuf.NewLanes[testRecord](len(rings), 8192, ringbuf.RingOptions{Policy: ringbuf.Block})
		if err != nil {
			b.Fatal(err)
		}
		pop, stats = lanes.PopBatch, s.Stats
		run = func(ctx context.Context) error { return s.RunInto(ctx, lanes) }
	} else {
		events := newRingBuf(b, total)
		w = newWriter(b, events, writerOptions{burst: 16, wakeup: total / 4})
		d := newDrainer(b, events, opts)
		r, err := ringbuf.NewRing[testRecord](8192, ringbuf.RingOptions{Policy: ringbuf.Block})
		if err != nil {
			b.Fatal(err)
		}
		pop, stats = r.PopBatch, d.Stats
		run = func(ctx context.Context) error { return d.RunInto(ctx, r) }
	}

	ctx, cancel := context.WithCancel(context.Background())
	drained := make(chan struct{})
	var runErr error
	go func() { defer close(drained); runErr = run(ctx) }()
	var stop atomic.Bool
	var producerCPU atomic.Int64
	cpu0 := processCPU()
	var producers []<-chan struct{}
	for cpu := range 2 {
		producers = append(producers, producer(b, w, cpu, 1<<16, &stop, &producerCPU))
	}

	c := newSeqCheck()
	records := popChunks(b, pop, c)
	elapsed := b.Elapsed()

	stop.Store(true)
	for _, p := range producers {
		<-p
	}
	cancel()
	popUntil(pop, c, drained)
	cpu := processCPU() - cpu0
	if runErr != nil {
		b.Fatal(runErr)
	}
	c.check(b, w, 0)
	written, full := w.total()
	st := stats()
	b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(producerCPU.Load())/float64(written+full), "producer-ns/record")
	b.ReportMetric(float64(cpu.Nanoseconds()-producerCPU.Load())/float64(st.Records), "drain-ns/record")
	b.ReportMetric(100*float64(full)/float64(written+full), "lost-%")
}

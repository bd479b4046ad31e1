package main

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	cebpf "github.com/cilium/ebpf/ringbuf"

	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// Each op of BenchmarkDrainPlain drains a backlog of plainBacklog 16-byte
// records (24 bytes with the ring's header) from a 4 MiB kernel ring.
const (
	plainRing    = 4 << 20
	plainBacklog = 150_000
)

type plainRecord struct{ A, B uint64 }

func decodePlain(sample []byte, r *plainRecord) error {
	if len(sample) != 16 {
		return errors.New("short record")
	}
	r.A = binary.LittleEndian.Uint64(sample)
	r.B = binary.LittleEndian.Uint64(sample[8:])
	return nil
}

// plainWriter loads a socket filter that writes one 16-byte record into
// events per run with bpf_ringbuf_output and the given flags.
func plainWriter(b *testing.B, events *ebpf.Map, flags int32) *ebpf.Program {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R1, 2),
			asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
			asm.LoadMapPtr(asm.R1, events.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -16),
			asm.Mov.Imm(asm.R3, 16),
			asm.Mov.Imm(asm.R4, flags),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		b.Fatalf("load a ring writer: %v", err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}

// plainRig is a kernel ring and the programs that fill it.
type plainRig struct {
	events        *ebpf.Map
	fill, kick    *ebpf.Program
	packet        []byte
	written, read uint64
}

func newPlainRig(b *testing.B) *plainRig {
	if os.Geteuid() != 0 {
		b.Skip("a kernel ring buffer needs root")
	}
	events, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: plainRing})
	if err != nil {
		b.Fatalf("create a ring buffer: %v", err)
	}
	b.Cleanup(func() { events.Close() })
	const noWakeup, forceWakeup = 1, 2
	return &plainRig{events: events, fill: plainWriter(b, events, noWakeup), kick: plainWriter(b, events, forceWakeup), packet: make([]byte, 14)}
}

// backlog writes plainBacklog records, the last forcing a wakeup.
func (r *plainRig) backlog(b *testing.B) {
	if _, err := r.fill.Run(&ebpf.RunOptions{Data: r.packet, Repeat: plainBacklog - 1}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.kick.Run(&ebpf.RunOptions{Data: r.packet}); err != nil {
		b.Fatal(err)
	}
	r.written += plainBacklog
}

func (r *plainRig) report(b *testing.B) {
	b.ReportMetric(float64(r.read)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(r.read), "ns/record")
}

// BenchmarkDrainPlain drains the same backlog three ways: cilium/ebpf's
// Reader.Read (a new record, allocated, per read), Reader.ReadInto (a
// reused record), and bpfstatd's ringbuf.Drainer handing decoded records
// to a callback. An op is one backlog of 150 k records, written off the
// clock by a socket filter run with BPF_PROG_TEST_RUN.
func BenchmarkDrainPlain(b *testing.B) {
	b.Run("cilium-read", func(b *testing.B) {
		rig := newPlainRig(b)
		rd, err := cebpf.NewReader(rig.events)
		if err != nil {
			b.Fatal(err)
		}
		defer rd.Close()
		var rec plainRecord
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			rig.backlog(b)
			b.StartTimer()
			for range plainBacklog {
				r, err := rd.Read()
				if err != nil {
					b.Fatal(err)
				}
				if err := decodePlain(r.RawSample, &rec); err != nil {
					b.Fatal(err)
				}
				rig.read++
			}
		}
		rig.report(b)
	})
	b.Run("cilium-readinto", func(b *testing.B) {
		rig := newPlainRig(b)
		rd, err := cebpf.NewReader(rig.events)
		if err != nil {
			b.Fatal(err)
		}
		defer rd.Close()
		var r cebpf.Record
		var rec plainRecord
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			rig.backlog(b)
			b.StartTimer()
			for range plainBacklog {
				if err := rd.ReadInto(&r); err != nil {
					b.Fatal(err)
				}
				if err := decodePlain(r.RawSample, &rec); err != nil {
					b.Fatal(err)
				}
				rig.read++
			}
		}
		rig.report(b)
	})
	b.Run("bpfstatd", func(b *testing.B) {
		rig := newPlainRig(b)
		d, err := ringbuf.NewDrainer(rig.events, decodePlain, ringbuf.DrainOptions{Poll: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		var got atomic.Uint64
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx, func(*plainRecord) { got.Add(1) }) }()
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			rig.backlog(b)
			b.StartTimer()
			deadline := time.Now().Add(10 * time.Second)
			for got.Load() < rig.written {
				if time.Now().After(deadline) {
					b.Fatalf("drained %d of %d records", got.Load(), rig.written)
				}
			}
		}
		rig.read = got.Load()
		b.StopTimer()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, os.ErrClosed) {
			b.Fatal(err)
		}
		rig.report(b)
	})
}

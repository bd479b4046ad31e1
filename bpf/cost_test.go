package bpf_test

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

// costWindow is how many ops BenchmarkProgramCosts runs with the run-time
// statistics on.
const costWindow = 200

// A costCase is a collector with an op that makes its events.
type costCase struct {
	name  string
	load  func(*bpf.Shared) (bpf.Collector, error)
	hooks []costHook
	ring  bool // its programs write ring-buffer records
	op    func(testing.TB) func()
}

// A costHook is a tracepoint and the collector's program on it.
type costHook struct{ tracepoint, program string }

// BenchmarkProgramCosts measures the programs of the collectors not
// covered by BenchmarkSyscallHooks and BenchmarkNetPacket, each under an
// op that makes its events: ns/op is the op with the collector attached
// (statistics off), and for every program that ran, bpf-ns/<program> is
// its run time per run over costWindow ops with kernel.bpf_stats_enabled
// on, runs/<program> its runs per op, and irq-work/op the IRQ work
// interrupts (reader wakeups among them) per op over that window.
//
// <collector>/none is the op with no program attached: the baseline the
// collector's ns/op adds to.
//
// <collector>/default_wakeup (ring-buffer collectors) is the same
// collector submitting every record with flags 0, the kernel's default
// wakeup, drained by cilium's ringbuf.Reader: between events far apart the
// reader has caught up and sleeps, so each record wakes it.
//
// These events come far apart (an exec every few hundred microseconds), so
// each run starts with its instructions and data out of the CPU's caches.
// Programs assembled here and attached to the same tracepoints under the
// same program names show what that costs any program:
//
//   - <collector>/empty: a program that only returns;
//   - <collector>/ring_only (ring-buffer collectors): a bare reserve, zero
//     and submit of a 48-byte record, the least a program that writes a
//     record per event can cost there.
//
// The OOM program is left out: an OOM kill per op is no benchmark (its
// test makes one).
func BenchmarkProgramCosts(b *testing.B) {
	kerneltest.Require(b)
	stats := bpfStatsSwitch(b)
	cases := []costCase{
		{"process", func(s *bpf.Shared) (bpf.Collector, error) { return bpf.LoadProcess(s) },
			[]costHook{{"sched_process_exec", "exec"}, {"sched_process_exit", "exit"}, {"sched_process_fork", "fork"}},
			true, spawnOp},
		{"tcp", func(s *bpf.Shared) (bpf.Collector, error) { return bpf.LoadTCP(s) },
			[]costHook{{"inet_sock_set_state", "state"}, {"tcp_send_reset", "send_reset"}, {"tcp_receive_reset", "receive_reset"}},
			true, tcpOp},
		{"skb", func(s *bpf.Shared) (bpf.Collector, error) { return bpf.LoadSKB(s) },
			[]costHook{{"kfree_skb", "kfree_skb"}}, false, udpClosedPortOp},
		{"runq", func(s *bpf.Shared) (bpf.Collector, error) { return bpf.LoadRunq(s) },
			[]costHook{{"sched_switch", "runq_switch"}, {"sched_wakeup", "runq_wakeup"}}, false, pingPongOp},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			measureCollector(b, c, costShared(b, drainer), stats)
		})
		b.Run(c.name+"/none", func(b *testing.B) {
			costShared(b, drainer)
			measureCosts(b, c.op(b), nil, stats)
		})
		if c.ring {
			b.Run(c.name+"/default_wakeup", func(b *testing.B) {
				sh := costShared(b, ciliumReader)
				sh.UseDefaultWakeup()
				measureCollector(b, c, sh, stats)
			})
		}
		for _, floor := range []string{"empty", "ring_only"} {
			if floor == "ring_only" && !c.ring {
				continue
			}
			insns := func(sh *bpf.Shared) asm.Instructions {
				if floor == "empty" {
					return floorInsns()
				}
				return ringOnlyInsns(sh.Events())
			}
			b.Run(c.name+"/"+floor, func(b *testing.B) {
				sh := costShared(b, drainer)
				var progs []*ebpf.Program
				for _, h := range c.hooks {
					p := tracepointProgram(b, h.tracepoint, h.program, insns(sh))
					defer attachHook(b, p)()
					progs = append(progs, p)
				}
				measureCosts(b, c.op(b), progs, stats)
			})
		}
	}
}

// measureCollector loads and attaches c's collector on sh and measures its
// programs.
func measureCollector(b *testing.B, c costCase, sh *bpf.Shared, stats func(on bool)) {
	col, err := c.load(sh)
	if err != nil {
		b.Fatal(err)
	}
	defer col.Close()
	sh.ReleaseBTF()
	if err := col.Attach(); err != nil {
		b.Fatal(err)
	}
	measureCosts(b, c.op(b), bpf.AttachedPrograms(col), stats)
}

// costShared returns shared maps with a 1 MiB ring that reader (drainer,
// the daemon's, or ciliumReader) drains until b ends.
func costShared(b *testing.B, reader func(testing.TB, *bpf.Shared) func()) *bpf.Shared {
	sh, err := bpf.NewShared(bpf.RingOptions{Size: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sh.Close() })
	b.Cleanup(reader(b, sh)) // runs first
	return sh
}

// measureCosts runs op in a b.Loop, then costWindow times with the
// statistics on, and reports each program's run time per run.
func measureCosts(b *testing.B, op func(), progs []*ebpf.Program, stats func(on bool)) {
	for b.Loop() {
		op()
	}
	before := make([]ebpf.ProgramStats, len(progs))
	stats(true)
	for i, p := range progs {
		s, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		before[i] = *s
	}
	irq := irqWork()
	for range costWindow {
		op()
	}
	b.ReportMetric(float64(irqWork()-irq)/costWindow, "irq-work/op")
	for i, p := range progs {
		s, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		runs := s.RunCount - before[i].RunCount
		if runs == 0 {
			continue
		}
		name := programName(b, p)
		b.ReportMetric(float64(s.Runtime-before[i].Runtime)/float64(runs), "bpf-ns/"+name)
		b.ReportMetric(float64(runs)/costWindow, "runs/"+name)
	}
	stats(false)
}

// programName returns p's name without its "handle_" prefix.
func programName(b *testing.B, p *ebpf.Program) string {
	info, err := p.Info()
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimPrefix(info.Name, "handle_")
}

// spawnOp runs /bin/true: a fork, an exec and an exit.
func spawnOp(tb testing.TB) func() {
	return func() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			tb.Fatal(err)
		}
	}
}

// tcpOp connects to a listener on loopback and closes both ends, then
// connects to a closed port (a reset sent, and one received).
func tcpOp(tb testing.TB) func() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	closed := closedTCPPort(tb)
	return func() {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		c.Close()
		s.Close()
		if c, err := net.Dial("tcp4", closed); err == nil {
			c.Close()
			tb.Fatalf("connected to %s, which should be closed", closed)
		}
	}
}

// closedTCPPort returns a loopback address no socket listens on.
func closedTCPPort(tb testing.TB) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// udpClosedPortOp sends a datagram to a loopback port no socket has: the
// kernel drops it (no socket) and answers with an ICMP error.
func udpClosedPortOp(tb testing.TB) func() {
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	to := l.LocalAddr().(*net.UDPAddr)
	l.Close()
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	msg := []byte("x")
	return func() { s.WriteToUDP(msg, to) } // errors (ECONNREFUSED from the last ICMP) do not matter
}

// pingPongOp passes a byte to a thread of its own through a pipe and
// waits for it back: two wakeups and the switches they make.
func pingPongOp(tb testing.TB) func() {
	r1, w1, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	go func() {
		runtime.LockOSThread()
		buf := make([]byte, 1)
		for {
			if _, err := r1.Read(buf); err != nil {
				return
			}
			if _, err := w2.Write(buf); err != nil {
				return
			}
		}
	}()
	tb.Cleanup(func() { w1.Close(); r1.Close(); w2.Close(); r2.Close() })
	buf := make([]byte, 1)
	return func() {
		if _, err := w1.Write(buf); err != nil {
			tb.Fatal(err)
		}
		if _, err := r2.Read(buf); err != nil {
			tb.Fatal(err)
		}
	}
}

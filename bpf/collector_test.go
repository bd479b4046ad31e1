package bpf_test

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

// printkInsns calls bpf_trace_printk("bpfstatd\n") and returns 0.
func printkInsns() asm.Instructions {
	const msg = "bpfstatd\n\x00\x00\x00\x00\x00\x00\x00" // 16 bytes
	var insns asm.Instructions
	for i := 0; i < len(msg); i += 8 {
		var w uint64
		for j := range 8 {
			w |= uint64(msg[i+j]) << (8 * j)
		}
		insns = append(insns,
			asm.LoadImm(asm.R1, int64(w), asm.DWord),
			asm.StoreMem(asm.RFP, int16(i-len(msg)), asm.R1, asm.DWord))
	}
	return append(insns,
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, -int32(len(msg))),
		asm.Mov.Imm(asm.R2, 10), // "bpfstatd\n" and its NUL
		asm.FnTracePrintk.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return())
}

// TestTracingMisses makes the kernel skip a tracing program and checks
// that Misses counts it: the program sits on the bpf_trace_printk
// tracepoint and calls bpf_trace_printk itself, so each run would nest
// inside itself, and the kernel runs it once and counts one miss.
func TestTracingMisses(t *testing.T) {
	kerneltest.Require(t)
	onPrintk, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
		AttachTo: "bpf_trace_printk", License: "GPL", Instructions: printkInsns()})
	if err != nil {
		t.Fatalf("load tracing program: %v", err)
	}
	defer onPrintk.Close()
	trigger, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: printkInsns()})
	if err != nil {
		t.Fatalf("load trigger program: %v", err)
	}
	defer trigger.Close()

	var tr bpf.Tracing
	if n, err := tr.Misses(); err != nil || n != 0 {
		t.Fatalf("Misses before attach = %d, %v; want 0, nil", n, err)
	}
	if err := tr.Attach(onPrintk); err != nil {
		t.Fatal(err)
	}
	defer tr.Detach()
	const runs = 5
	for range runs {
		if _, err := trigger.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
			t.Fatalf("run trigger: %v", err)
		}
	}
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	// Other callers of bpf_trace_printk on the host can only add runs.
	if n, err := tr.Misses(); err != nil || n < runs {
		t.Fatalf("Misses = %d, %v; want at least %d, nil", n, err, runs)
	}
}

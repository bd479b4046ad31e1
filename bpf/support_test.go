package bpf_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bpfstatd/bpfstatd/bpf"
	"github.com/bpfstatd/bpfstatd/internal/kerneltest"
)

func TestCheckSupport(t *testing.T) {
	kerneltest.Require(t)
	if err := bpf.CheckSupport(bpf.KernelBTFPath); err != nil {
		t.Fatalf("CheckSupport on a supported kernel: %v", err)
	}
}

// TestCheckSupportNoBTF names what is missing in one sentence.
func TestCheckSupportNoBTF(t *testing.T) {
	kerneltest.Require(t) // past the privilege check
	err := bpf.CheckSupport("/nonexistent/vmlinux")
	if !errors.Is(err, bpf.ErrNoBTF) {
		t.Fatalf("CheckSupport without BTF = %v, want ErrNoBTF", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "CONFIG_DEBUG_INFO_BTF") || strings.Contains(msg, "\n") {
		t.Errorf("message %q should be one line naming CONFIG_DEBUG_INFO_BTF", msg)
	}
}

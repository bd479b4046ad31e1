module github.com/bpfstatd/bpfstatd

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/lmittmann/tint v1.2.1
	github.com/spf13/pflag v1.1.0
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.50.0
)

tool github.com/cilium/ebpf/cmd/bpf2go

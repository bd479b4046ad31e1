package bpf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// SKBDropSlots is how many kernel drop reasons have a counter of their
// own: reasons 0 to SKBDropSlots-1. Linux 6.18 defines about 130; larger
// values (the reasons of subsystems, from 1<<16) share
// [SKBDrops.OutOfRange]. It mirrors SKB_DROP_SLOTS in skb.c.
const SKBDropSlots = 256

// SKBDrops is packets dropped by the kernel, by drop reason, summed over
// CPUs since the collector was loaded.
type SKBDrops struct {
	// ByReason is indexed by the kernel's enum skb_drop_reason. Slots 0
	// (not dropped) and 1 (consumed) stay zero: those packets are not
	// drops.
	ByReason [SKBDropSlots]uint64
	// OutOfRange counts drops whose reason is SKBDropSlots or more.
	OutOfRange uint64
}

// SKB is the skb collector's kernel side: a BTF-typed tracepoint on
// kfree_skb that counts every dropped packet in a per-CPU counter of its
// drop reason, one array increment a drop. It writes no records and has no
// drop ledger: a counter cannot be lost.
//
// Its metric, read with [SKB.Read] once an interval and shipped as the
// difference from the last read:
//
//	host.skb.drop  counter, tag reason: the kernel's name without its
//	               SKB_DROP_REASON_ prefix ([SKB.ReasonName]), such as
//	               reason:NETFILTER_DROP, reason:NOT_SPECIFIED, or
//	               reason:OUT_OF_RANGE
//
// Read and ReasonName may be called from one goroutine at a time.
type SKB struct {
	objs skbObjects
	tracing
	names  [SKBDropSlots]string
	keys   []uint32
	values []uint64 // per key, one per possible CPU
}

var _ Collector = (*SKB)(nil)

// LoadSKB loads the skb collector's program and names the drop reasons
// from the kernel's BTF.
func LoadSKB(s *Shared) (*SKB, error) {
	spec, err := loadSkb()
	if err != nil {
		return nil, err
	}
	kernel, err := kernelBTF(s)
	if err != nil {
		return nil, fmt.Errorf("load skb collector: %w", err)
	}
	k := new(SKB)
	if err := dropReasonNames(kernel, &k.names); err != nil {
		return nil, fmt.Errorf("load skb collector: %w", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("load skb collector: %w", err)
	}
	if err := s.load("skb", spec, &k.objs); err != nil {
		return nil, err
	}
	k.keys = make([]uint32, SKBDropSlots+1)
	k.values = make([]uint64, (SKBDropSlots+1)*ncpu)
	return k, nil
}

// Name returns "skb".
func (k *SKB) Name() string { return "skb" }

// Attach starts the program.
func (k *SKB) Attach() error { return k.attach(k.Name(), k.objs.HandleKfreeSkb) }

// Detach stops the program; the counts stay readable.
func (k *SKB) Detach() error { return k.detach(k.Name()) }

// Close detaches the program and releases it.
func (k *SKB) Close() error {
	return errors.Join(k.Detach(), k.objs.Close())
}

// Read sums the per-CPU counters into d, with one system call.
func (k *SKB) Read(d *SKBDrops) error {
	var cursor ebpf.MapBatchCursor
	n, err := k.objs.SkbDrops.BatchLookup(&cursor, k.keys, k.values, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read skb drops: %w", err)
	}
	if n != len(k.keys) {
		return fmt.Errorf("read skb drops: got %d of %d counters", n, len(k.keys))
	}
	*d = SKBDrops{}
	ncpu := len(k.values) / len(k.keys)
	for i, key := range k.keys {
		var sum uint64
		for _, v := range k.values[i*ncpu : (i+1)*ncpu] {
			sum += v
		}
		if key < SKBDropSlots {
			d.ByReason[key] = sum
		} else {
			d.OutOfRange += sum
		}
	}
	return nil
}

// ReasonName returns the kernel's name of a drop reason without its
// SKB_DROP_REASON_ prefix, as the kfree_skb tracepoint prints it, such as
// "NETFILTER_DROP"; "REASON_n" for a value this kernel does not name; and
// "OUT_OF_RANGE" for reasons of SKBDropSlots or more.
func (k *SKB) ReasonName(reason uint32) string {
	if reason >= SKBDropSlots {
		return "OUT_OF_RANGE"
	}
	return k.names[reason]
}

// dropReasonNames names each slot from the kernel's enum skb_drop_reason.
func dropReasonNames(kernel *btf.Spec, names *[SKBDropSlots]string) error {
	var reasons *btf.Enum
	if err := kernel.TypeByName("skb_drop_reason", &reasons); err != nil {
		return fmt.Errorf("find drop reasons in kernel BTF: %w", err)
	}
	for i := range names {
		names[i] = "REASON_" + strconv.Itoa(i)
	}
	// As the kernel's own table in the kfree_skb tracepoint's format:
	// SKB_DROP_REASON_SKB_CSUM is SKB_CSUM, SKB_CONSUMED is CONSUMED.
	for _, v := range reasons.Values {
		if v.Value >= SKBDropSlots {
			continue
		}
		name, ok := strings.CutPrefix(v.Name, "SKB_DROP_REASON_")
		if !ok {
			name = strings.TrimPrefix(v.Name, "SKB_")
		}
		names[v.Value] = name
	}
	return nil
}

// kernelBTF returns the kernel's BTF: the copy s parsed for loading
// collectors, or a fresh one once s has released its copy.
func kernelBTF(s *Shared) (*btf.Spec, error) {
	cache := s.btf
	if cache == nil {
		cache = btf.NewCache()
	}
	spec, err := cache.Kernel()
	if err != nil {
		return nil, fmt.Errorf("read kernel BTF: %w", err)
	}
	return spec, nil
}

// tracepointArgs returns how many arguments the kernel passes to a
// BTF-typed tracepoint's programs, from its btf_trace_<name> type.
func tracepointArgs(kernel *btf.Spec, name string) (int, error) {
	var td *btf.Typedef
	if err := kernel.TypeByName("btf_trace_"+name, &td); err != nil {
		return 0, fmt.Errorf("find tracepoint %s in kernel BTF: %w", name, err)
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return 0, fmt.Errorf("tracepoint %s has type %s, want a function pointer", name, td.Type)
	}
	fn, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(fn.Params) == 0 {
		return 0, fmt.Errorf("tracepoint %s has type %s, want a function", name, ptr.Target)
	}
	return len(fn.Params) - 1, nil // the first is the tracepoint's data
}

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Block is the block I/O latency collector's kernel side: BTF-typed
// tracepoints on block_rq_issue and block_rq_complete that time each
// request from its issue to the driver to its completion, in a [Hist] of
// nanoseconds per disk kept in a per-CPU map. Partitions count in their
// disk. Only request-based disks are seen: not device mapper, md or zram
// devices themselves, but the disks under them.
//
// Metric: host.block.latency, a distribution (|d) of nanoseconds, tagged
// disk:<name> with the name from [DiskName]: each non-empty bucket of an
// interval's counts ([Hist.Sub] of two reads) ships as its midpoint
// (shipper.BucketMidpoint) with sample rate 1/count.
//
// Both of its maps are bounded: requests in flight (10240) and disks
// ([MaxDisks]). A request issued while the first is full, or completed on
// a disk that finds the second full, is counted in the drop ledger
// ([ProgBlock]) as seen and ring_full, so seen = emitted + ring_full.
// Requests in flight when the programs are attached are not measured.
//
// Its methods are called from one goroutine.
type Block struct {
	objs blockObjects
	tracing
	perCPU []Hist
}

var _ Collector = (*Block)(nil)

// MaxDisks is how many disks the block collector keeps histograms for
// (BLOCK_MAX_DISKS in block.c).
const MaxDisks = 256

// LoadBlock loads the block I/O latency programs, counting in s's ledger.
func LoadBlock(s *Shared) (*Block, error) {
	spec, err := loadBlock()
	if err != nil {
		return nil, err
	}
	b := new(Block)
	if err := s.load("block", spec, &b.objs); err != nil {
		return nil, err
	}
	return b, nil
}

// Name returns "block".
func (b *Block) Name() string { return "block" }

// Attach starts the programs, forgetting requests noted before a Detach.
func (b *Block) Attach() error {
	if b.links != nil {
		return nil
	}
	if err := forgetStarts[uint64](b.objs.BlockStart); err != nil {
		return fmt.Errorf("attach block collector: clear requests in flight: %w", err)
	}
	return b.attach(b.Name(), b.objs.BlockIssue, b.objs.BlockComplete)
}

// Detach stops the programs.
func (b *Block) Detach() error { return b.detach(b.Name()) }

// Read empties into, then sets the histogram of every disk that has one:
// nanoseconds, counted since the programs were loaded (or since the disk
// was forgotten).
func (b *Block) Read(into map[Dev]Hist) error {
	clear(into)
	var dev uint32
	it := b.objs.BlockHist.Iterate()
	for it.Next(&dev, &b.perCPU) {
		into[Dev(dev)] = sumHist(b.perCPU)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read block histograms: %w", err)
	}
	return nil
}

// Forget drops disk d's histogram, making room for another disk: call it
// when d is gone ([DiskName] fails with [os.ErrNotExist]).
func (b *Block) Forget(d Dev) error {
	if err := b.objs.BlockHist.Delete(uint32(d)); err != nil {
		return fmt.Errorf("forget disk %s: %w", d, err)
	}
	return nil
}

// Close detaches the programs and releases them.
func (b *Block) Close() error {
	return errors.Join(b.Detach(), b.objs.Close())
}

// Dev is a block device number in the kernel's own encoding of dev_t:
// major << 20 | minor.
type Dev uint32

// MakeDev returns the device number major:minor.
func MakeDev(major, minor uint32) Dev { return Dev(major<<20 | minor&minorMask) }

const minorMask = 1<<20 - 1

// Major returns d's major number.
func (d Dev) Major() uint32 { return uint32(d) >> 20 }

// Minor returns d's minor number.
func (d Dev) Minor() uint32 { return uint32(d) & minorMask }

// String returns "major:minor".
func (d Dev) String() string {
	return strconv.FormatUint(uint64(d.Major()), 10) + ":" + strconv.FormatUint(uint64(d.Minor()), 10)
}

// DiskName returns the kernel's name of disk d, as in /sys/block ("sda",
// "nvme0n1", "loop0"): the target of the link /sys/dev/block/<d>. The error
// wraps [os.ErrNotExist] when there is no such disk.
func DiskName(d Dev) (string, error) {
	target, err := os.Readlink("/sys/dev/block/" + d.String())
	if err != nil {
		return "", fmt.Errorf("resolve disk %s: %w", d, err)
	}
	return filepath.Base(target), nil
}

package ringbuf_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfstatd/bpfstatd/ringbuf"
)

func ExampleRing() {
	r, err := ringbuf.NewRing[int](4, ringbuf.RingOptions{Policy: ringbuf.OverwriteOldest})
	if err != nil {
		panic(err)
	}
	for i := range 6 {
		r.Push(i) // 0 and 1 are overwritten
	}
	buf := make([]int, 8)
	n := r.PopBatch(buf)
	fmt.Println(buf[:n])
	fmt.Printf("%+v\n", r.Stats())
	// Output:
	// [2 3 4 5]
	// {Pushed:6 Popped:4 Dropped:0 Overwritten:2 Waits:0}
}

func ExampleRing_PushBatch() {
	r, err := ringbuf.NewRing[string](2, ringbuf.RingOptions{}) // RejectNewest
	if err != nil {
		panic(err)
	}
	n := r.PushBatch([]string{"a", "b", "c"})
	fmt.Println(n, "stored")
	var s string
	for r.Pop(&s) {
		fmt.Println(s)
	}
	fmt.Println(r.Stats().Dropped, "dropped")
	// Output:
	// 2 stored
	// a
	// b
	// 1 dropped
}

func ExampleLanes() {
	l, err := ringbuf.NewLanes[int](2, 4, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	for i := range l.NumLanes() {
		lane := l.Lane(i) // one producer per lane
		wg.Go(func() {
			_, err := lane.PushBatchWait(context.Background(), []int{10 * i, 10*i + 1, 10*i + 2})
			if err != nil {
				panic(err)
			}
		})
	}
	wg.Wait()
	buf := make([]int, 8)
	n := l.PopBatch(buf) // the lanes in turn, each in order
	fmt.Println(buf[:n])
	// Output:
	// [0 1 2 10 11 12]
}

// decodeExec decodes the records of the example's kernel program.
func decodeExec(sample []byte, r *[16]byte) error {
	if len(sample) != len(r) {
		return errors.New("bad record")
	}
	copy(r[:], sample)
	return nil
}

// The drain goroutine pushes batches of records into a ring; the consumer
// pops them in batches. events is a BPF ring buffer map its programs write
// to; stop them before cancelling the context, and the last records are
// read too.
func ExampleDrainer_RunInto() {
	var events *ebpf.Map // BPF_MAP_TYPE_RINGBUF, from the loaded collection
	d, err := ringbuf.NewDrainer(events, decodeExec, ringbuf.DrainOptions{})
	if err != nil {
		panic(err)
	}
	defer d.Close()
	r, err := ringbuf.NewRing[[16]byte](4096, ringbuf.RingOptions{Policy: ringbuf.Block})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.RunInto(ctx, r) }()

	buf := make([][16]byte, 256)
	for range 100 { // the consumer's loop
		n := r.PopBatch(buf)
		_ = buf[:n] // aggregate
		if n == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	cancel() // after the programs are detached
	for {
		select {
		case err := <-done:
			for r.PopBatch(buf) > 0 { // what the final read pushed
			}
			fmt.Println(err, d.Stats())
			return
		default:
			r.PopBatch(buf) // a Block ring needs its consumer until RunInto returns
		}
	}
}

// Each CPU's program writes to its own ring; one lane per ring, one
// consumer.
func ExampleShardedDrainer() {
	const size = 256 << 10
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		panic(err)
	}
	// The programs look their ring up in outer, at their CPU's index.
	outer, err := ebpf.NewMap(ringbuf.ShardsSpec(cpus, size))
	if err != nil {
		panic(err)
	}
	rings, err := ringbuf.NewShardRings(outer, size)
	if err != nil {
		panic(err)
	}
	s, err := ringbuf.NewShardedDrainer(rings, decodeExec, ringbuf.DrainOptions{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	lanes, err := ringbuf.NewLanes[[16]byte](s.NumShards(), 4096, ringbuf.RingOptions{})
	if err != nil {
		panic(err)
	}
	go func() { _ = s.RunInto(context.Background(), lanes) }()
	buf := make([][16]byte, 256)
	n := lanes.PopBatch(buf)
	fmt.Println(n, s.Stats(), s.Fill())
}

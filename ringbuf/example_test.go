package ringbuf_test

import (
	"context"
	"fmt"
	"sync"

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

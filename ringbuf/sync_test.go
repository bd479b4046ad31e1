package ringbuf_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfstatd/bpfstatd/ringbuf"
)

// TestDrainerSync writes records that never wake the reader, whose timer
// never fires either: each Sync returns only once every record written
// before it has been handed on.
func TestDrainerSync(t *testing.T) {
	events := newRingBuf(t, 64<<10)
	w := newWriter(t, events, writerOptions{})
	d := newDrainer(t, events, ringbuf.DrainOptions{Poll: time.Hour})
	if err := d.Sync(context.Background()); err != nil {
		t.Errorf("Sync with no Run in progress: %v", err)
	}
	var got atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w.write(1) // read as soon as Run starts: then Sync has a Run to wait for
	go func() { done <- d.Run(ctx, func(*testRecord) { got.Add(1) }) }()
	for got.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for round := range 20 {
		w.write(100)
		written, _ := w.total()
		sctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		err := d.Sync(sctx)
		stop()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if n := got.Load(); n != written {
			t.Fatalf("round %d: %d records handed on after Sync, %d written", round, n, written)
		}
		if st := d.Stats(); st.Records != written {
			t.Errorf("round %d: Stats %+v after Sync, %d written", round, st, written)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(context.Background()); err != nil {
		t.Errorf("Sync after Run: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(context.Background()); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Sync after Close: %v, want ErrClosed", err)
	}
}

// TestDrainerSyncCancelled: a Sync whose drain goroutine is kept busy
// returns its context's error when the context ends.
func TestDrainerSyncCancelled(t *testing.T) {
	events := newRingBuf(t, 64<<10)
	w := newWriter(t, events, writerOptions{})
	d := newDrainer(t, events, ringbuf.DrainOptions{Poll: time.Hour})
	w.write(10)
	release, stuck := make(chan struct{}), make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, func(*testRecord) {
			select {
			case stuck <- struct{}{}:
			default:
			}
			<-release
		})
	}()
	<-stuck
	w.write(10)
	sctx, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	if err := d.Sync(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sync while the drain is stuck: %v, want DeadlineExceeded", err)
	}
	close(release)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

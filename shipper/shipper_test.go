package shipper

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// checkAccounting checks that every datagram and line queued was sent,
// failed, dropped for a reason, or is still queued (a datagram returned
// after it was sent counts as sent and as failed).
func checkAccounting(t *testing.T, st Stats) {
	t.Helper()
	c := st.Counts
	dd, dl := c.Dropped()
	sent, lines := c[StatDatagramsSent]-c[StatDatagramsReturned], c[StatLinesSent]-c[StatLinesReturned]
	if got := sent + c[StatDatagramsFailed] + dd + uint64(st.QueueLen); got != c[StatDatagramsQueued] {
		t.Errorf("datagrams: sent %d (less %d returned) + failed %d + dropped %d + queued %d != produced %d",
			c[StatDatagramsSent], c[StatDatagramsReturned], c[StatDatagramsFailed], dd, st.QueueLen, c[StatDatagramsQueued])
	}
	if st.QueueLen == 0 && lines+c[StatLinesFailed]+dl != c[StatLinesQueued] {
		t.Errorf("lines: sent %d (less %d returned) + failed %d + dropped %d != produced %d",
			c[StatLinesSent], c[StatLinesReturned], c[StatLinesFailed], dl, c[StatLinesQueued])
	}
}

// receiver counts the datagrams and lines a socket receives.
type receiver struct {
	conn      net.PacketConn
	datagrams atomic.Int64
	lines     atomic.Int64
	done      chan struct{}
}

func newReceiver(t *testing.T, network, addr string) *receiver {
	t.Helper()
	var conn net.PacketConn
	var err error
	for range 50 { // the port or path may take a moment to be free again
		if conn, err = net.ListenPacket(network, addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n > 0 {
				r.datagrams.Add(1)
				r.lines.Add(int64(bytes.Count(buf[:n], []byte("\n"))))
			}
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *receiver) close() {
	r.conn.Close()
	<-r.done
}

// producer updates 100 counter series and flushes every interval until
// stopped, as the daemon's drain and flush loops do.
type producer struct {
	mu    sync.Mutex
	agg   *Aggregator
	added atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

func startProducer(t *testing.T, sh *Shipper, every time.Duration) *producer {
	t.Helper()
	in, _ := NewInterner(InternerOptions{})
	m := mustRegister(t, in, MetricSpec{Name: "test.counter", TagKeys: []string{"series"}})
	keys := make([]Key, 100)
	for i := range keys {
		keys[i] = m.Key([]byte(strconv.Itoa(i)))
	}
	p := &producer{agg: NewAggregator(in, AggregatorOptions{}), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			p.mu.Lock()
			for _, k := range keys {
				p.agg.Add(k, 1)
			}
			p.added.Add(int64(len(keys)))
			sh.Flush(p.agg)
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(p.halt)
	return p
}

func (p *producer) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func runShipper(t *testing.T, sh *Shipper) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sh.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		closeCtx, stop := context.WithTimeout(context.Background(), time.Second)
		defer stop()
		sh.Close(closeCtx)
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// testBreaker runs a receiver that goes away and comes back: the breaker
// opens within 5 s, memory stays flat while it is open, and it closes
// within 2 s of the receiver's return; every datagram is accounted for.
func testBreaker(t *testing.T, network, addr string, goAway func(*receiver)) {
	r := newReceiver(t, network, addr)
	sh, err := Dial(network, addr, Options{}) // default breaker timings

	if err != nil {
		t.Fatal(err)
	}
	runShipper(t, sh)
	p := startProducer(t, sh, 20*time.Millisecond)
	waitFor(t, 2*time.Second, "first lines", func() bool { return r.lines.Load() >= 200 })

	goAway(r)
	took := waitFor(t, 5*time.Second, "breaker opens", func() bool { return sh.Breaker() != BreakerClosed })
	t.Logf("breaker opened %v after the receiver went away: %v", took, sh.Err())
	if err := sh.Err(); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("the breaker's error %q does not name the receiver %s", err, addr)
	}

	// While open: flushes defer, the aggregator keeps summing in place.
	before := heapInUse()
	queued := sh.Stats().Counts[StatDatagramsQueued]
	time.Sleep(500 * time.Millisecond)
	if sh.Breaker() == BreakerClosed {
		t.Fatal("breaker closed with no receiver")
	}
	if grew := int64(heapInUse()) - int64(before); grew > 256<<10 {
		t.Errorf("heap grew %d bytes while open", grew)
	}
	st := sh.Stats()
	if st.Counts[StatDatagramsQueued] != queued || st.Counts[StatFlushesDeferred] == 0 || st.QueueLen > st.QueueCap {
		t.Errorf("while open: queued %d → %d, deferred %d, queue %d/%d",
			queued, st.Counts[StatDatagramsQueued], st.Counts[StatFlushesDeferred], st.QueueLen, st.QueueCap)
	}

	back := newReceiver(t, network, addr)
	took = waitFor(t, 2*time.Second, "breaker closes", func() bool { return sh.Breaker() == BreakerClosed })
	t.Logf("breaker closed %v after the receiver returned", took)
	waitFor(t, 2*time.Second, "lines after return", func() bool { return back.lines.Load() >= 200 })

	p.halt()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	sh.Send(ctx)
	st = sh.Stats()
	checkAccounting(t, st)
	c := st.Counts
	if c[StatBreakerOpened] == 0 || c[StatBreakerClosed] == 0 || c[StatBreakerProbes] == 0 {
		t.Errorf("breaker counters: %v", c)
	}
	t.Logf("sent %d, failed %d, probes %d, deferred flushes %d, error %v",
		c[StatDatagramsSent], c[StatDatagramsFailed], c[StatBreakerProbes], c[StatFlushesDeferred], sh.Err())
}

func TestBreakerUDP(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "[::1]"} {
		t.Run(addr, func(t *testing.T) {
			l, err := net.ListenPacket("udp", addr+":0")
			if err != nil {
				t.Skipf("no %s: %v", addr, err)
			}
			a := l.LocalAddr().String()
			l.Close()
			testBreaker(t, "udp", a, func(r *receiver) { r.close() })
		})
	}
}

// TestBreakerUDPSlow: at the daemon's cadence, one small datagram a second,
// the breaker still opens within 5 s of the receiver going away.
func TestBreakerUDPSlow(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	r := newReceiver(t, "udp", "127.0.0.1:0")
	sh, err := Dial("udp", r.conn.LocalAddr().String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	runShipper(t, sh)
	in, _ := NewInterner(InternerOptions{})
	m := mustRegister(t, in, MetricSpec{Name: "c"})
	agg := NewAggregator(in, AggregatorOptions{})
	flush := func() {
		agg.Add(m.Key(), 1)
		sh.Flush(agg)
	}
	flush()
	waitFor(t, time.Second, "first line", func() bool { return r.lines.Load() == 1 })
	r.close()
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for sh.Breaker() == BreakerClosed && time.Since(start) < 6*time.Second {
		<-tick.C
		flush()
		time.Sleep(50 * time.Millisecond) // let the sender try
	}
	if took := time.Since(start); sh.Breaker() == BreakerClosed || took > 5*time.Second {
		t.Fatalf("breaker %v after %v", sh.Breaker(), took)
	} else {
		t.Logf("breaker opened %v after the receiver went away, flushing every second", took)
	}
	checkAccounting(t, sh.Stats())
}

func TestBreakerUnixgram(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statsd.sock")
	testBreaker(t, "unixgram", path, func(r *receiver) {
		r.close()
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	})
}

// TestBreakerFullSocket: a unixgram receiver that stops reading fills its
// queue; the write timeout fails rounds, which opens the breaker, and the
// datagrams that did not fit stay queued rather than being lost.
func TestBreakerFullSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statsd.sock")
	conn, err := net.ListenPacket("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sh, err := Dial("unixgram", path, Options{WriteTimeout: 20 * time.Millisecond, Breaker: BreakerOptions{MinBackoff: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	runShipper(t, sh)
	p := startProducer(t, sh, time.Millisecond)
	waitFor(t, 5*time.Second, "breaker opens", func() bool { return sh.Breaker() == BreakerOpen })
	p.halt()
	st := sh.Stats()
	checkAccounting(t, st)
	if st.Counts[StatDatagramsFailed] != 0 {
		t.Errorf("%d datagrams failed; a full socket should requeue them", st.Counts[StatDatagramsFailed])
	}
	if !isPressure(sh.Err()) {
		t.Errorf("last error %v is not buffer pressure", sh.Err())
	}
	if err := sh.Err(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("the last error %q does not name the socket %s", err, path)
	}
}

// slowTransport accepts one batch per delay, like a receiver far slower
// than the producer.
type slowTransport struct {
	delay time.Duration
	sent  atomic.Int64
}

func (s *slowTransport) writeBatch(bufs [][]byte) (int, error) {
	time.Sleep(s.delay)
	s.sent.Add(int64(len(bufs)))
	return len(bufs), nil
}
func (*slowTransport) setDeadline(time.Time) {}
func (*slowTransport) probe(context.Context, time.Duration, func([]byte)) (bool, error) {
	return false, nil
}
func (*slowTransport) staleRefused() bool                        { return false }
func (*slowTransport) bounced(time.Duration, func([]byte)) error { return nil }
func (*slowTransport) returns() bool                             { return false }
func (*slowTransport) maxPayload() int                           { return UDPPayload }
func (*slowTransport) close() error                              { return nil }

// TestOverload: a producer far faster than the sender. The queue stays
// within its bound, drops follow the policy, and sent + dropped = produced
// exactly, in datagrams and in lines.
func TestOverload(t *testing.T) {
	for _, policy := range []QueuePolicy{DropByPriority, DropOldest, DropNewest} {
		t.Run(policy.String(), func(t *testing.T) {
			tr := &slowTransport{delay: 200 * time.Microsecond}
			sh, err := newShipper(tr, Options{Queue: QueueOptions{Capacity: 64, Policy: policy}, Batch: BatcherOptions{Size: 4, Fixed: true}})
			if err != nil {
				t.Fatal(err)
			}
			in, _ := NewInterner(InternerOptions{})
			var ms [3]*Metric
			for i, prio := range []Priority{Low, Normal, Critical} {
				ms[i] = mustRegister(t, in, MetricSpec{Name: "m" + prio.String(), Priority: prio, TagKeys: []string{"k"}})
			}
			agg := NewAggregator(in, AggregatorOptions{})
			var keys []Key
			for i := range 300 {
				for _, m := range ms {
					keys = append(keys, m.Key([]byte(strconv.Itoa(i))))
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { sh.Run(ctx); close(done) }()

			maxLen := 0
			var produced int
			for range 200 {
				for _, k := range keys {
					agg.Add(k, 1)
				}
				produced += len(keys)
				sh.Flush(agg)
				maxLen = max(maxLen, sh.queue.Len())
			}
			cancel()
			<-done
			st := sh.Stats()
			checkAccounting(t, st)
			if maxLen > 64 {
				t.Errorf("queue reached %d of 64", maxLen)
			}
			sh.Close(context.Background())
			st = sh.Stats()
			checkAccounting(t, st)
			c := st.Counts
			if uint64(produced) != c[StatLinesQueued] {
				t.Errorf("produced %d lines, queued %d", produced, c[StatLinesQueued])
			}
			if got := uint64(tr.sent.Load()); got != c[StatDatagramsSent] {
				t.Errorf("transport took %d datagrams, counted %d", got, c[StatDatagramsSent])
			}
			dd, _ := c.Dropped()
			if dd == 0 {
				t.Fatal("no drops: the producer was not faster")
			}
			switch policy {
			case DropNewest:
				if c[StatDroppedOldest]+c[StatDroppedPriority] != 0 {
					t.Errorf("drop-newest evicted: %v", c)
				}
			case DropOldest:
				if c[StatDroppedNewest]+c[StatDroppedPriority] != 0 {
					t.Errorf("drop-oldest refused: %v", c)
				}
			case DropByPriority:
				if c[StatDroppedNewest] != 0 || c[StatDroppedPriority] == 0 {
					t.Errorf("drop-by-priority: %v", c)
				}
			}
			t.Logf("produced %d lines in %d datagrams: sent %d, dropped %d (oldest %d, newest %d, priority %d, closed %d)",
				produced, c[StatDatagramsQueued], c[StatDatagramsSent], dd, c[StatDroppedOldest], c[StatDroppedNewest], c[StatDroppedPriority], c[StatDroppedClosed])
		})
	}
}

func TestWriterShipper(t *testing.T) {
	var buf bytes.Buffer
	sh, err := NewWriter(&buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := NewInterner(InternerOptions{Tags: []string{"env:test"}})
	m := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"comm"}})
	agg := NewAggregator(in, AggregatorOptions{})
	agg.Add(m.Key([]byte("sh")), 3)
	sh.Flush(agg)
	sh.Send(context.Background())
	if got := buf.String(); got != "c:3|c|#comm:sh,env:test\n" {
		t.Errorf("wrote %q", got)
	}
	checkAccounting(t, sh.Stats())
}

// TestShipUDP sends a large flush over loopback UDP: several datagrams go
// in each sendmmsg call, the receiver gets every line, the payload limit
// follows the address family, and sampled events get a latency.
func TestShipUDP(t *testing.T) {
	for _, tc := range []struct {
		addr  string
		limit int
	}{{"127.0.0.1:0", UDPPayload}, {"[::1]:0", UDPPayloadIPv6}} {
		t.Run(tc.addr, func(t *testing.T) {
			if l, err := net.ListenPacket("udp", tc.addr); err != nil {
				t.Skipf("no %s: %v", tc.addr, err)
			} else {
				l.Close()
			}
			r := newReceiver(t, "udp", tc.addr)
			sh, err := Dial("udp", r.conn.LocalAddr().String(), Options{Latency: LatencyOptions{Every: 10}})
			if err != nil {
				t.Fatal(err)
			}
			if sh.MaxPayload() != tc.limit {
				t.Errorf("payload limit %d, want %d", sh.MaxPayload(), tc.limit)
			}
			in, _ := NewInterner(InternerOptions{})
			m := mustRegister(t, in, MetricSpec{Name: "c", TagKeys: []string{"k"}})
			agg := NewAggregator(in, AggregatorOptions{})
			for i := range 3000 {
				agg.Add(m.Key([]byte(strconv.Itoa(i))), 1)
				sh.Latency().Event(uint64(monotonicNow()))
			}
			sh.Flush(agg)
			sh.Send(context.Background())
			waitFor(t, 2*time.Second, "all lines", func() bool { return r.lines.Load() == 3000 })
			st := sh.Stats()
			checkAccounting(t, st)
			c := st.Counts
			if c[StatLinesSent] != 3000 || c[StatSendCalls] >= c[StatDatagramsSent] {
				t.Errorf("sent %d lines in %d datagrams with %d calls", c[StatLinesSent], c[StatDatagramsSent], c[StatSendCalls])
			}
			if l := st.Latency; l.Samples != 300 || l.Max <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
				t.Errorf("latency %+v", l)
			}
			if err := sh.Close(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestUnixgramLater: a receiver that appears after the shipper started is
// found by the breaker's probes.
func TestUnixgramLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statsd.sock")
	sh, err := Dial("unixgram", path, Options{Breaker: BreakerOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if sh.Breaker() != BreakerOpen || !errors.Is(sh.Err(), syscall.ENOENT) {
		t.Fatalf("breaker %v, error %v", sh.Breaker(), sh.Err())
	}
	runShipper(t, sh)
	r := newReceiver(t, "unixgram", path)
	waitFor(t, 2*time.Second, "breaker closes", func() bool { return sh.Breaker() == BreakerClosed })
	startProducer(t, sh, 10*time.Millisecond)
	waitFor(t, 2*time.Second, "lines", func() bool { return r.lines.Load() >= 100 })
	if sh.Stats().Counts[StatReconnects] == 0 {
		t.Error("no reconnect counted")
	}
}

func TestNewConn(t *testing.T) {
	r := newReceiver(t, "udp", "127.0.0.1:0")
	c, err := net.Dial("udp", r.conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	sh, err := NewConn(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sh.tr.(*udpTransport); !ok {
		t.Fatalf("transport %T", sh.tr)
	}
	in, _ := NewInterner(InternerOptions{})
	m := mustRegister(t, in, MetricSpec{Name: "c"})
	agg := NewAggregator(in, AggregatorOptions{})
	agg.Add(m.Key(), 1)
	sh.Flush(agg)
	sh.Send(context.Background())
	waitFor(t, time.Second, "line", func() bool { return r.lines.Load() == 1 })
	if err := sh.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestDialErrors(t *testing.T) {
	if _, err := Dial("tcp", "127.0.0.1:1", Options{}); err == nil {
		t.Error("dialled tcp")
	}
	if _, err := Dial("unixgram", filepath.Join(t.TempDir(), strings.Repeat("x", 200)), Options{}); err == nil {
		t.Error("dialled a path too long for a socket")
	}
	if _, err := NewWriter(os.Stdout, Options{MaxPayload: 10}); err == nil {
		t.Error("accepted a 10-byte payload limit")
	}
}

// TestFlushFinalWithBreakerOpen: totals that an open breaker held back are
// packed by the final flush and, since they cannot be sent, counted as
// dropped at shutdown, line for line.
func TestFlushFinalWithBreakerOpen(t *testing.T) {
	r := newReceiver(t, "udp", "127.0.0.1:0")
	addr := r.conn.LocalAddr().String()
	r.close()
	sh, err := Dial("udp", addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := NewInterner(InternerOptions{})
	m := mustRegister(t, in, MetricSpec{Name: "test.counter", TagKeys: []string{"series"}})
	agg := NewAggregator(in, AggregatorOptions{})
	const series = 50
	add := func() {
		for i := range series {
			agg.Add(m.Key([]byte(strconv.Itoa(i))), 1)
		}
	}
	ctx := context.Background()
	for sh.Breaker() == BreakerClosed {
		add()
		sh.Flush(agg)
		sh.Send(ctx)
		time.Sleep(10 * time.Millisecond)
	}
	add()
	if sh.Flush(agg) {
		t.Fatal("flushed with the breaker open")
	}
	before := sh.Stats().Counts
	sh.FlushFinal(agg)
	if err := sh.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c := sh.Stats().Counts
	queued := c[StatLinesQueued] - before[StatLinesQueued]
	if queued != series {
		t.Errorf("final flush queued %d lines, want %d", queued, series)
	}
	if left := c[StatDroppedClosedLines] - before[StatDroppedClosedLines]; left != series {
		t.Errorf("%d lines counted as left at shutdown, want %d", left, series)
	}
	checkAccounting(t, sh.Stats())
}

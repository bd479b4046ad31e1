package shipper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Shipper defaults, used where an option is zero.
const (
	// DefaultWriteTimeout bounds one send round; a socket that stays full
	// that long fails the round.
	DefaultWriteTimeout = time.Second
	// DefaultProbeWait is how long a UDP probe waits for an ICMP error.
	DefaultProbeWait = 20 * time.Millisecond
)

// Options configure a [Shipper]. The zero value works.
type Options struct {
	// Dialect is the receiver's flavour of StatsD.
	Dialect Dialect
	// MaxPayload is the largest datagram in bytes; zero means the
	// transport's default: [UDPPayload] for UDP over IPv4 and writers,
	// [UDPPayloadIPv6] over IPv6, [UnixgramPayload] for unixgram.
	MaxPayload int
	Queue      QueueOptions
	Batch      BatcherOptions
	Breaker    BreakerOptions
	Latency    LatencyOptions
	// WriteTimeout bounds one send round; zero means [DefaultWriteTimeout].
	WriteTimeout time.Duration
	// ProbeWait is how long a UDP probe waits for an ICMP error; zero
	// means [DefaultProbeWait].
	ProbeWait time.Duration
}

// Shipper packs what an [Aggregator] holds into datagrams, queues them,
// and sends them in batches through a circuit breaker.
//
// One goroutine (the flush loop, holding the lock that guards the
// Aggregator) calls [Shipper.Flush]; one goroutine runs [Shipper.Run], or
// the flush loop calls [Shipper.Send] itself instead; [Shipper.Stats],
// [Shipper.Err] and the accessors may be called from any goroutine;
// [Shipper.Close] is called last, after Run has returned.
type Shipper struct {
	tr        transport
	packer    *Packer
	queue     *Queue
	batcher   *Batcher
	breaker   *Breaker
	counters  *SelfCounters
	latency   *Latency
	flushStat *CounterShard
	last      PackerStats // packer's stats already counted
	sendStat  *CounterShard
	timeout   time.Duration
	probeWait time.Duration
	log       *sentLog           // what was sent, when the transport names returns
	bounce    func(quote []byte) // s.returned, allocated once

	mu      sync.Mutex // the sending side: Run, Send and Close
	batch   []Datagram
	bufs    [][]byte
	lastErr atomic.Pointer[error]
}

// Dial returns a Shipper sending to address over network: "udp", "udp4" or
// "udp6" with HOST:PORT, or "unixgram" with a socket path. A unixgram
// socket that does not exist yet, or refuses, is not an error: the Shipper
// starts with its breaker open, [Shipper.Err] says why, and probes connect
// when the receiver appears.
func Dial(network, address string, opts Options) (*Shipper, error) {
	var tr transport
	var missing, err error
	switch network {
	case "udp", "udp4", "udp6":
		tr, err = dialUDP(network, address)
	case "unixgram":
		tr, missing, err = dialUnixgram(address)
	default:
		return nil, fmt.Errorf("dial %s %s: unsupported network", network, address)
	}
	if err != nil {
		return nil, err
	}
	s, err := newShipper(tr, opts)
	if err != nil {
		return nil, errors.Join(err, tr.close())
	}
	if missing != nil {
		s.setErr(missing)
		s.breaker.Trip(time.Now())
	}
	return s, nil
}

// NewConn returns a Shipper sending on c, a connected UDP or unixgram
// socket, with batched sends and probes as [Dial] sets up; it redials c's
// remote address when it has to. Other connections are written to as by
// [NewWriter]. Close closes c.
func NewConn(c net.Conn, opts Options) (*Shipper, error) {
	switch c := c.(type) {
	case *net.UDPConn:
		if a, ok := c.RemoteAddr().(*net.UDPAddr); ok {
			tr, err := newUDPTransport("udp", a.String(), c)
			if err != nil {
				return nil, err
			}
			return newShipper(tr, opts)
		}
	case *net.UnixConn:
		if a, ok := c.RemoteAddr().(*net.UnixAddr); ok && a.Net == "unixgram" {
			w, err := newBatchWriter(c)
			if err != nil {
				return nil, err
			}
			return newShipper(&unixTransport{path: a.Name, conn: c, w: w}, opts)
		}
	}
	return NewWriter(c, opts)
}

// NewWriter returns a Shipper writing each datagram to w with one Write
// call, such as standard output. Close closes w if it is an io.Closer.
func NewWriter(w io.Writer, opts Options) (*Shipper, error) {
	return newShipper(writerTransport{w}, opts)
}

func newShipper(tr transport, opts Options) (*Shipper, error) {
	if opts.MaxPayload == 0 {
		opts.MaxPayload = tr.maxPayload()
	}
	counters := NewSelfCounters(4)
	q := NewQueue(opts.Queue, counters)
	p, err := NewPacker(q, PackerOptions{Dialect: opts.Dialect, MaxPayload: opts.MaxPayload})
	if err != nil {
		return nil, err
	}
	s := &Shipper{
		tr:        tr,
		packer:    p,
		queue:     q,
		batcher:   NewBatcher(opts.Batch),
		breaker:   NewBreaker(opts.Breaker),
		counters:  counters,
		latency:   NewLatency(opts.Latency),
		flushStat: counters.Shard(2),
		sendStat:  counters.Shard(3),
		timeout:   opts.WriteTimeout,
		probeWait: opts.ProbeWait,
	}
	if s.timeout <= 0 {
		s.timeout = DefaultWriteTimeout
	}
	if s.probeWait <= 0 {
		s.probeWait = DefaultProbeWait
	}
	if tr.returns() {
		s.log = newSentLog()
	}
	s.bounce = s.returned
	return s, nil
}

// Flush packs every series a touched in this interval into datagrams and
// queues them, and reports whether it did. While the breaker is not closed
// it does nothing: a keeps aggregating, in bounded memory, and the next
// flush after the breaker closes ships the totals.
func (s *Shipper) Flush(a *Aggregator) bool {
	if s.breaker.State() != BreakerClosed {
		s.flushStat.Add(StatFlushesDeferred, 1)
		return false
	}
	s.pack(a)
	return true
}

// FlushFinal packs every series a touched since it last shipped and queues
// them, whatever the breaker's state: the last flush before [Shipper.Close],
// which sends what it can and counts the rest as dropped at shutdown, so
// that totals a breaker held back are counted rather than lost unseen.
func (s *Shipper) FlushFinal(a *Aggregator) {
	s.pack(a)
}

// pack packs a's interval into datagrams and queues them.
func (s *Shipper) pack(a *Aggregator) {
	gen := s.packer.gen
	a.Flush(s.packer)
	s.latency.seal(gen)
	s.packer.Flush()
	st := s.packer.Stats()
	s.flushStat.Add(StatLinesTooLong, st.TooLong-s.last.TooLong)
	s.flushStat.Add(StatLinesRejected, st.Rejected-s.last.Rejected)
	s.last = st
}

// Run sends queued datagrams until ctx is done, probing the receiver while
// the breaker is open. It returns nil when ctx is done.
func (s *Shipper) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		if s.step(ctx) {
			continue
		}
		var probe <-chan time.Time
		if s.breaker.State() == BreakerOpen {
			timer.Reset(time.Until(s.breaker.ProbeAt()))
			probe = timer.C
		}
		select {
		case <-s.queue.Ready():
		case <-probe:
		case <-ctx.Done():
		}
	}
	return nil
}

// Send sends what is queued now, for callers that do not run
// [Shipper.Run]: it returns when the queue is empty, the breaker is open,
// or ctx is done. It probes an open breaker whose wait is over.
func (s *Shipper) Send(ctx context.Context) {
	for ctx.Err() == nil && s.step(ctx) {
		if s.breaker.State() != BreakerClosed {
			return
		}
	}
}

// step does one unit of sending work and reports whether there was any.
func (s *Shipper) step(ctx context.Context) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.breaker.State() {
	case BreakerOpen:
		if !s.breaker.Probe(time.Now()) {
			return false
		}
		fallthrough
	case BreakerHalfOpen:
		s.probe(ctx)
		return true
	}
	return s.round()
}

// probe checks a half-open breaker's receiver.
func (s *Shipper) probe(ctx context.Context) {
	s.sendStat.Add(StatBreakerProbes, 1)
	reconnected, err := s.tr.probe(ctx, s.probeWait, s.bounce)
	if err != nil {
		s.setErr(err)
		s.breaker.Failure(time.Now())
		return
	}
	if reconnected {
		s.sendStat.Add(StatReconnects, 1)
	}
	if s.breaker.Success() {
		s.sendStat.Add(StatBreakerClosed, 1)
	}
}

// round sends one batch and reports whether there was one. A datagram a
// send error refused is counted as failed; one the socket had no room for
// goes back to the queue, as do those after a failure.
func (s *Shipper) round() bool {
	// Datagrams returned since the last round are lost, and the receiver
	// likely gone: the round fails, whatever its sends do.
	var roundErr error
	if err := s.tr.bounced(0, s.bounce); err != nil {
		roundErr = err
	}
	batch := s.batcher.Next(s.queue, s.batch)
	s.batch = batch[:0]
	if len(batch) == 0 {
		if roundErr != nil {
			s.setErr(roundErr)
			if s.breaker.Failure(time.Now()) {
				s.sendStat.Add(StatBreakerOpened, 1)
			}
		}
		return false
	}
	bufs := s.bufs[:0]
	for _, d := range batch {
		bufs = append(bufs, d.Bytes())
	}
	now := time.Now()
	s.tr.setDeadline(now.Add(s.timeout))
	sent, ok := 0, 0
	pressure, retried := false, false
	for sent < len(batch) {
		n, err := s.tr.writeBatch(bufs[sent:])
		s.sendStat.Add(StatSendCalls, 1)
		s.sent(batch[sent : sent+n])
		sent += n
		ok += n
		if err == nil {
			continue
		}
		roundErr = err
		if isPressure(err) {
			pressure = true
			break
		}
		if !retried && s.tr.staleRefused() && isRefused(err) {
			retried = true // the error was about an earlier datagram
			s.tr.bounced(0, s.bounce)
			continue
		}
		s.failed(batch[sent])
		sent++
		break
	}
	clear(bufs)
	s.bufs = bufs[:0]
	if sent < len(batch) {
		s.queue.Requeue(batch[sent:])
	}
	clear(batch)
	s.batcher.Done(len(batch), ok, pressure)
	// A write that went through proves little over UDP, where a missing
	// receiver shows as an ICMP error a moment later: once a round has
	// failed, each round waits for bounces before it counts as a success.
	failed := roundErr != nil
	if failed {
		s.setErr(roundErr)
		if s.breaker.Failure(now) {
			s.sendStat.Add(StatBreakerOpened, 1)
			return true
		}
	}
	if s.breaker.Failures() > 0 {
		if err := s.tr.bounced(s.probeWait, s.bounce); err != nil {
			s.setErr(err)
			if s.breaker.Failure(time.Now()) {
				s.sendStat.Add(StatBreakerOpened, 1)
			}
			return true
		}
	}
	if !failed {
		s.breaker.Success()
	}
	return true
}

func (s *Shipper) sent(ds []Datagram) {
	for _, d := range ds {
		if s.log != nil {
			s.log.add(d.Bytes(), d.Lines)
		}
		s.sendStat.Add(StatDatagramsSent, 1)
		s.sendStat.Add(StatLinesSent, uint64(d.Lines))
		s.sendStat.Add(StatBytesSent, uint64(d.Len()))
		if d.Last {
			s.latency.sent(d.Gen)
		}
		d.Release()
	}
}

func (s *Shipper) failed(d Datagram) {
	s.sendStat.Add(StatDatagramsFailed, 1)
	s.sendStat.Add(StatLinesFailed, uint64(d.Lines))
	s.sendStat.Add(StatBytesFailed, uint64(d.Len()))
	d.Release()
}

// returned counts a datagram sent that the network returned undelivered,
// known by the prefix of its payload that the error quotes, as failed. An
// empty one is a probe.
func (s *Shipper) returned(quote []byte) {
	if len(quote) == 0 {
		return
	}
	size, lines, _ := s.log.match(quote)
	s.sendStat.Add(StatDatagramsFailed, 1)
	s.sendStat.Add(StatLinesFailed, uint64(lines))
	s.sendStat.Add(StatBytesFailed, uint64(size))
	s.sendStat.Add(StatDatagramsReturned, 1)
	s.sendStat.Add(StatLinesReturned, uint64(lines))
}

func (s *Shipper) setErr(err error) { s.lastErr.Store(&err) }

// Err returns the last send or probe error, or nil if there was none.
func (s *Shipper) Err() error {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Close sends what is queued while ctx allows and the breaker stays closed,
// drops and counts the rest, and closes the socket. Run must have returned.
func (s *Shipper) Close(ctx context.Context) error {
	s.Send(ctx)
	s.queue.DropAll()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tr.bounced(0, s.bounce) // count what came back of the last sends
	return s.tr.close()
}

// Stats is a snapshot of a Shipper's state.
type Stats struct {
	Counts   Counts
	Breaker  BreakerState
	QueueLen int
	QueueCap int
	Latency  LatencyStats
}

// Stats returns a snapshot of the shipper's counters and state.
func (s *Shipper) Stats() Stats {
	return Stats{
		Counts:   s.counters.Snapshot(),
		Breaker:  s.breaker.State(),
		QueueLen: s.queue.Len(),
		QueueCap: s.queue.Cap(),
		Latency:  s.latency.Stats(),
	}
}

// FillSignals sets the shipper's part of sig from the counters' change
// since prev (lines produced, lines dropped or failed, failed sends) and
// the queue fill, and returns the counters to pass as prev next time.
func (s *Shipper) FillSignals(sig *Signals, prev Counts) Counts {
	c := s.counters.Snapshot()
	_, dl := c.Dropped()
	_, pl := prev.Dropped()
	sig.Lines = c[StatLinesQueued] - prev[StatLinesQueued]
	sig.UserDrops = dl - pl + c[StatLinesFailed] - prev[StatLinesFailed] + c[StatLinesTooLong] - prev[StatLinesTooLong] +
		c[StatLinesRejected] - prev[StatLinesRejected]
	sig.SendErrors = c[StatDatagramsFailed] - prev[StatDatagramsFailed] + c[StatBreakerOpened] - prev[StatBreakerOpened]
	sig.QueueFill = s.QueueFill()
	return c
}

// Latency returns the latency tracker; the producing goroutine calls its
// Event for each event.
func (s *Shipper) Latency() *Latency { return s.latency }

// Breaker returns the circuit breaker's state.
func (s *Shipper) Breaker() BreakerState { return s.breaker.State() }

// QueueFill returns the fraction of the queue in use, from 0 to 1.
func (s *Shipper) QueueFill() float64 { return float64(s.queue.Len()) / float64(s.queue.Cap()) }

// MaxPayload returns the payload limit in bytes.
func (s *Shipper) MaxPayload() int { return s.packer.Limit() }

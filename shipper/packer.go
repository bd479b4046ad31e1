package shipper

import "fmt"

// Payload limits for one datagram.
const (
	// UDPPayload fits an IPv4 UDP datagram into a 1500-byte MTU.
	UDPPayload = 1432
	// UDPPayloadIPv6 fits an IPv6 UDP datagram into the minimum IPv6 MTU
	// path (1280 bytes) with room to spare.
	UDPPayloadIPv6 = 1232
	// UnixgramPayload is the usual limit of a receiver on a Unix datagram
	// socket, such as the Datadog agent's.
	UnixgramPayload = 8192
	// MinPayload is the smallest payload a Packer accepts.
	MinPayload = 64
)

// PackerOptions configure a [Packer]. The zero value works.
type PackerOptions struct {
	// Dialect is the receiver's flavour of StatsD; the zero value is
	// DogStatsD.
	Dialect Dialect
	// MaxPayload is the largest datagram in bytes; zero means [UDPPayload].
	MaxPayload int
}

// PackerStats count what a [Packer] produced.
type PackerStats struct {
	Lines     uint64 // lines in datagrams handed to the sink
	Datagrams uint64 // datagrams handed to the sink
	Bytes     uint64 // payload bytes handed to the sink
	// TooLong counts lines dropped for being longer than a whole datagram.
	TooLong uint64
	// Rejected counts lines not sent because the dialect's receiver would
	// reject them: negative counter sums for statsd_exporter.
	Rejected uint64
}

// Packer writes aggregated series as "\n"-terminated lines of its
// [Dialect] into datagrams of at most the payload limit, never splitting a
// line, one open datagram per [Priority] so that a datagram carries lines
// of one priority only. Full datagrams go to its [Sink].
//
// A Packer is not safe for concurrent use; [Aggregator.Flush] and
// [Packer.Flush] drive it from one goroutine.
type Packer struct {
	d     *dialectSpec
	limit int
	sink  Sink
	pool  *bufPool
	// The open datagram of class c is open[c][:fill[c]], in the pooled
	// buffer bufs[c]; open[c] is limit bytes long, or nil if none is open.
	open  [numPriorities][]byte
	fill  [numPriorities]int
	bufs  [numPriorities]*buffer
	lines [numPriorities]int
	gen   uint64
	stats PackerStats

	rendered []lineParts // rendered heads and tails, by Key
	ws       []weighted  // bucket scratch
	vs       []float64   // value scratch
	unit     []byte      // type and rate written after each value (multiRepeat)
	end      []byte      // what ends a line after its values
}

// NewPacker returns a Packer handing datagrams to sink.
func NewPacker(sink Sink, opts PackerOptions) (*Packer, error) {
	limit := opts.MaxPayload
	if limit == 0 {
		limit = UDPPayload
	}
	if limit < MinPayload {
		return nil, fmt.Errorf("create packer: payload limit %d is below %d bytes", limit, MinPayload)
	}
	if opts.Dialect >= numDialects {
		return nil, fmt.Errorf("create packer: unknown dialect %d", opts.Dialect)
	}
	return &Packer{d: &dialects[opts.Dialect], limit: limit, sink: sink, pool: newBufPool(limit), gen: 1}, nil
}

// Limit returns the payload limit in bytes.
func (p *Packer) Limit() int { return p.limit }

// Stats returns what the packer produced so far.
func (p *Packer) Stats() PackerStats { return p.stats }

// Flush hands every open datagram to the sink, critical first, marks the
// last one, and starts the next flush generation.
func (p *Packer) Flush() {
	last := -1
	for c := numPriorities - 1; c >= 0; c-- {
		if p.fill[c] > 0 {
			last = c
		}
	}
	for c := numPriorities - 1; c >= 0; c-- {
		if p.fill[c] > 0 {
			p.ship(c, c == last)
		}
	}
	p.gen++
}

// ship hands the open datagram of class c to the sink.
func (p *Packer) ship(c int, last bool) {
	b := p.bufs[c]
	b.b = p.open[c][:p.fill[c]]
	p.bufs[c], p.open[c], p.fill[c] = nil, nil, 0
	p.stats.Datagrams++
	p.stats.Lines += uint64(p.lines[c])
	p.stats.Bytes += uint64(len(b.b))
	d := Datagram{buf: b, Lines: p.lines[c], Priority: Priority(c - 1), Gen: p.gen, Last: last}
	p.lines[c] = 0
	p.sink.Ship(d)
}

// begin returns the open datagram of class c, to append a line to.
func (p *Packer) begin(c int) []byte {
	if p.bufs[c] == nil {
		p.openBuf(c)
	}
	return p.open[c][:p.fill[c]]
}

// setOpen makes b the payload of the open datagram of class c. Like every
// pooled buffer, b has a capacity of at least the payload limit.
func (p *Packer) setOpen(c int, b []byte) {
	p.open[c], p.fill[c] = b[:p.limit], len(b)
}

// openBuf opens an empty datagram of class c in a pooled buffer, whose
// capacity is at least the payload limit.
func (p *Packer) openBuf(c int) {
	b := p.pool.get()
	p.bufs[c] = b
	p.setOpen(c, b.b)
}

// makeRoom makes room for a line of n bytes in the open datagram of class
// c, shipping the open one if it is too full and opening a new one if need
// be. If n is more than a whole datagram holds, it counts the line as too
// long and reports false.
func (p *Packer) makeRoom(c, n int) bool {
	if n > p.limit {
		p.stats.TooLong++
		return false
	}
	if p.fill[c]+n > p.limit {
		p.ship(c, false)
	}
	if p.bufs[c] == nil {
		p.openBuf(c)
	}
	return true
}

// commit takes the lines appended at b[start:] into the open datagram of
// class c. If they overflow it, they move to a new datagram and the old one
// ships; if they are longer than a whole datagram, they are dropped.
func (p *Packer) commit(c int, b []byte, start, lines int) {
	if len(b) <= p.limit {
		p.setOpen(c, b)
		p.lines[c] += lines
		return
	}
	p.spill(c, b, start, lines)
}

// spill handles lines that overflow the open datagram of class c.
func (p *Packer) spill(c int, b []byte, start, lines int) {
	p.setOpen(c, b[:start])
	if len(b)-start > p.limit {
		p.stats.TooLong += uint64(lines)
		return
	}
	nb := p.pool.get()
	nb.b = append(nb.b, b[start:]...)
	p.ship(c, false)
	p.bufs[c] = nb
	p.setOpen(c, nb.b)
	p.lines[c] = lines
}

// appendHead appends the metric name, with tags for tagsInName, and ':'.
func (p *Packer) appendHead(b []byte, s *series) []byte {
	b = append(b, s.m.name...)
	if p.d.tags == tagsInName && s.tags != "" {
		b = append(b, ',')
		for i := 0; i < len(s.tags); i++ {
			c := s.tags[i]
			if c == ':' {
				c = '='
			}
			b = append(b, c)
		}
	}
	return append(b, ':')
}

// appendEnd appends what follows the value of a one-value line: type,
// rate (empty or "|@r"), tags for tagsSuffix, and '\n'.
func (p *Packer) appendEnd(b []byte, s *series, typ string, rate []byte) []byte {
	b = append(b, typ...)
	b = append(b, rate...)
	if p.d.tags == tagsSuffix && s.tags != "" {
		b = append(b, "|#"...)
		b = append(b, s.tags...)
	}
	return append(b, '\n')
}

// lineParts are the fixed parts of a one-value line of a series: what
// comes before the value and what comes after it, and its priority class.
type lineParts struct {
	head, tail string
	class      int
	gen        uint32 // of the series the parts were rendered for
	// line is a counter line as last written: head, value, tail. Its
	// capacity fits any value (see fit) and holds at least a block.
	line []byte
}

// parts returns the rendered parts of series k, rendering them the first
// time.
func (p *Packer) parts(k Key, s *series) *lineParts {
	if int(k) < len(p.rendered) && p.rendered[k].head != "" && p.rendered[k].gen == s.gen {
		return &p.rendered[k]
	}
	return p.render(k, s)
}

func (p *Packer) render(k Key, s *series) *lineParts {
	for int(k) >= len(p.rendered) {
		p.rendered = append(p.rendered, lineParts{})
	}
	var b []byte
	b = p.appendHead(b, s)
	n := len(b)
	b = p.appendEnd(b, s, p.d.types[s.m.kind], nil)
	all := string(b)
	line := make([]byte, len(all), max(len(all)+maxIntLen, blockLen))
	copy(line, all)
	p.rendered[k] = lineParts{head: all[:n], tail: all[n:], class: s.m.prio.class(), gen: s.gen, line: line}
	return &p.rendered[k]
}

// fit makes lp.line n bytes long, with the tail at its end.
func (lp *lineParts) fit(n int) {
	lp.line = lp.line[:n]
	copy(lp.line[n-len(lp.tail):], lp.tail)
}

// counter packs "name:v|c". It measures the line first, then copies the
// series' last line into the room that leaves in the open datagram and
// writes the value over the old one: one copy, no append, no spill.
func (p *Packer) counter(k Key, s *series, v int64) {
	if v < 0 && p.d.noNegCount {
		p.stats.Rejected++
		return
	}
	var lp *lineParts // p.parts, inlined by hand for the hot path
	if int(k) < len(p.rendered) && p.rendered[k].gen == s.gen && p.rendered[k].head != "" {
		lp = &p.rendered[k]
	} else {
		lp = p.render(k, s)
	}
	c := lp.class
	head, tail := len(lp.head), len(lp.tail)
	n := head + intLen(v) + tail
	if n != len(lp.line) {
		lp.fit(n)
	}
	b, at := p.open[c], p.fill[c]
	if n > len(b)-at {
		if !p.makeRoom(c, n) {
			return
		}
		b, at = p.open[c], p.fill[c]
	}
	if n <= blockLen {
		copyBlock(b[at:], lp.line) // past the line's end, into the slack
	} else {
		copy(b[at:at+n], lp.line)
	}
	putInt(b[at+head:at+n-tail], v)
	p.fill[c] = at + n
	p.lines[c]++
}

// blockLen is the size of the block copyBlock copies. A pooled buffer has
// room for a block past the payload limit.
const blockLen = 64

const _ uint = slack - blockLen // a block fits in the slack

// copyBlock copies the first blockLen bytes of src to dst, whose
// capacities must hold them. Its four fixed-size moves compile to plain
// loads and stores, without the call and size dispatch of copy's
// runtime.memmove; for the short lines of most counters that saves about
// a sixth of the time to pack a line.
func copyBlock(dst, src []byte) {
	dst, src = dst[:blockLen], src[:blockLen]
	*(*[16]byte)(dst[0:16]) = [16]byte(src[0:16])
	*(*[16]byte)(dst[16:32]) = [16]byte(src[16:32])
	*(*[16]byte)(dst[32:48]) = [16]byte(src[32:48])
	*(*[16]byte)(dst[48:64]) = [16]byte(src[48:64])
}

// gauge packs "name:v|g", after "name:0|g" when v is negative and the
// dialect reads a sign as a change; both lines go in one datagram.
func (p *Packer) gauge(k Key, s *series, v float64) {
	lp := p.parts(k, s)
	c := s.m.prio.class()
	b := p.begin(c)
	start, lines := len(b), 1
	if v < 0 && p.d.gaugeReset {
		b = append(append(append(b, lp.head...), '0'), lp.tail...)
		lines++
	}
	b = append(b, lp.head...)
	b = appendValue(b, v)
	b = append(b, lp.tail...)
	p.commit(c, b, start, lines)
}

// observations packs the values of h: exact values and buckets of one
// observation at sample rate 1, then each group of buckets of equal count
// n at sample rate 1/n.
func (p *Packer) observations(k Key, s *series, h *hist) {
	ws := h.appendBuckets(p.ws[:0])
	// Insertion sort by count: there are at most a few dozen buckets.
	for i := 1; i < len(ws); i++ {
		for j := i; j > 0 && ws[j].count < ws[j-1].count; j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
	vs := append(p.vs[:0], h.values...)
	i := 0
	for ; i < len(ws) && ws[i].count == 1; i++ {
		vs = append(vs, ws[i].value)
	}
	p.values(k, s, vs, 1)
	for i < len(ws) {
		n := ws[i].count
		vs = vs[:0]
		for ; i < len(ws) && ws[i].count == n; i++ {
			vs = append(vs, ws[i].value)
		}
		p.values(k, s, vs, n)
	}
	p.ws, p.vs = ws[:0], vs[:0]
}

// values packs vals of series s, each standing for count observations, as
// few lines as the dialect and the payload limit allow.
func (p *Packer) values(k Key, s *series, vals []float64, count uint64) {
	if len(vals) == 0 {
		return
	}
	typ := p.d.types[s.m.kind]
	var rate [32]byte
	r := appendRate(rate[:0], count)
	p.unit, p.end = p.unit[:0], p.end[:0]
	if p.d.multi == multiRepeat {
		p.unit = append(append(p.unit, typ...), r...)
		p.end = append(p.end, '\n')
	} else {
		p.end = p.appendEnd(p.end, s, typ, r)
	}
	c := s.m.prio.class()
	for i := 0; i < len(vals); {
		b := p.begin(c)
		start := len(b)
		room := p.limit - start
		b = append(b, p.parts(k, s).head...)
		b = append(appendValue(b, vals[i]), p.unit...)
		if start > 0 && len(b)-start+len(p.end) > room {
			// Not even one value fits in what is left: ship and retry.
			p.setOpen(c, b[:start])
			p.ship(c, false)
			continue
		}
		i++
		for p.d.multi != multiNone && i < len(vals) {
			pos := len(b)
			b = append(appendValue(append(b, ':'), vals[i]), p.unit...)
			if len(b)-start+len(p.end) > room {
				b = b[:pos]
				break
			}
			i++
		}
		b = append(b, p.end...)
		p.commit(c, b, start, 1)
	}
}

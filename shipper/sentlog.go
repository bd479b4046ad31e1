package shipper

import (
	"bytes"
	"hash/maphash"
)

// sentLogSize is how many sent datagrams a [sentLog] remembers.
const sentLogSize = 1024

// Checkpoints at which a [sentLog] hashes a datagram's prefix, so that an
// ICMP error quoting only part of it can still be matched: Linux quotes
// 520 bytes of a UDP payload over IPv4, and routers at least 64 bytes of
// it, as RFC 1812 asks.
const (
	sentShortPrefix = 64
	sentLongPrefix  = 512
)

// sentLog remembers the last datagrams sent, oldest first, so that a
// datagram the network returns (an ICMP error quoting it) is charged with
// the lines it held. The zero value is not usable; use [newSentLog]. It
// belongs to the sending goroutine.
type sentLog struct {
	seed  maphash.Seed
	ring  []sentEntry
	first int // index of the oldest entry
	n     int
}

type sentEntry struct {
	size, lines int32
	short, long uint64 // hashes of the first sentShortPrefix and sentLongPrefix bytes
	full        uint64 // hash of the whole payload
}

func newSentLog() *sentLog {
	return &sentLog{seed: maphash.MakeSeed(), ring: make([]sentEntry, sentLogSize)}
}

// add records a datagram just sent with lines lines, forgetting the oldest
// if the log is full.
func (l *sentLog) add(b []byte, lines int) {
	e := sentEntry{size: int32(len(b)), lines: int32(lines), full: maphash.Bytes(l.seed, b)}
	e.short = maphash.Bytes(l.seed, b[:min(len(b), sentShortPrefix)])
	e.long = maphash.Bytes(l.seed, b[:min(len(b), sentLongPrefix)])
	i := (l.first + l.n) % len(l.ring)
	if l.n == len(l.ring) {
		l.first = (l.first + 1) % len(l.ring)
	} else {
		l.n++
	}
	l.ring[i] = e
}

// match finds the oldest datagram in the log that quote, a prefix of a
// returned datagram, can be from, forgets it and every older one (the
// network returns datagrams in the order they were sent, so those older
// ones arrived), and returns its size and lines. Without a match it
// returns the size of quote and the lines it holds whole, and ok false.
func (l *sentLog) match(quote []byte) (size, lines int, ok bool) {
	k := len(quote)
	var hash uint64
	var prefix int // 0: compare whole payloads
	switch {
	case k >= sentLongPrefix:
		hash, prefix = maphash.Bytes(l.seed, quote[:sentLongPrefix]), sentLongPrefix
	case k >= sentShortPrefix:
		hash, prefix = maphash.Bytes(l.seed, quote[:sentShortPrefix]), sentShortPrefix
	}
	full := maphash.Bytes(l.seed, quote)
	for i := range l.n {
		e := &l.ring[(l.first+i)%len(l.ring)]
		var hit bool
		switch {
		case int(e.size) == k:
			hit = e.full == full
		case int(e.size) < k:
		case prefix == sentLongPrefix:
			hit = e.long == hash
		case prefix == sentShortPrefix:
			hit = e.short == hash
		}
		if hit {
			size, lines = int(e.size), int(e.lines)
			l.first = (l.first + i + 1) % len(l.ring)
			l.n -= i + 1
			return size, lines, true
		}
	}
	return k, bytes.Count(quote, []byte{'\n'}), false
}

package shipper

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// KeyCache remembers the series of a metric with one variable tag by the
// tag's raw value as a NUL-padded 16-byte name, such as a task's comm as
// the kernel stores it, so that a lookup seen before compares two words
// instead of hashing a string. It is direct-mapped: a name that collides
// with another is looked up again with [Metric.Key].
//
// It returns exactly what [Metric.Key] would. It keeps a key only while
// its series lives: an entry whose series the [Aggregator] evicted (see
// [AggregatorOptions.IdleIntervals]), and whose key may since belong to
// another series, is stale and looked up again. Overflow series are never
// kept, so a value that overflowed gets its own series once the budget
// has room, as with Metric.Key.
//
// A KeyCache follows the concurrency rules of its metric's [Interner].
// The zero value is not usable; use [NewKeyCache].
type KeyCache struct {
	m     *Metric
	slots []keySlot
	shift uint8 // 64 - log2(len(slots))
}

// keySlot is one remembered name; key is noKey when empty.
type keySlot struct {
	id  [16]byte
	key Key
	gen uint32 // the series' generation when the key was looked up
}

// NewKeyCache returns an empty cache of m's keys with slots entries,
// rounded up to a power of two (at least 2). It panics unless m has
// exactly one variable tag.
func NewKeyCache(m *Metric, slots int) *KeyCache {
	if len(m.keys) != 1 {
		panic("shipper: NewKeyCache of " + m.name + ", which does not have exactly one variable tag")
	}
	bitsN := max(bits.Len(uint(max(slots, 2)-1)), 1)
	c := &KeyCache{m: m, slots: make([]keySlot, 1<<bitsN), shift: uint8(64 - bitsN)}
	for i := range c.slots {
		c.slots[i].key = noKey
	}
	return c
}

// Key returns m.Key(value), where value is name up to its first NUL (all
// 16 bytes if it has none). It does not allocate once the series exists.
func (c *KeyCache) Key(name *[16]byte) Key {
	s := &c.slots[c.index(name)]
	in := c.m.in
	if s.key != noKey && s.id == *name && in.series[s.key].gen == s.gen {
		return s.key
	}
	value := name[:]
	if i := bytes.IndexByte(value, 0); i >= 0 {
		value = value[:i]
	}
	k := c.m.Key(value)
	if k == c.m.overflow {
		return k
	}
	*s = keySlot{id: *name, key: k, gen: in.series[k].gen}
	return k
}

// index hashes id to a slot.
func (c *KeyCache) index(id *[16]byte) uint64 {
	lo := binary.LittleEndian.Uint64(id[:8])
	hi := binary.LittleEndian.Uint64(id[8:])
	return ((lo ^ bits.RotateLeft64(hi, 29)) * 0x9e3779b97f4a7c15) >> c.shift
}

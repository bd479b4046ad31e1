package shipper

import (
	"encoding/binary"
	"hash/maphash"
	"math"
)

// Sizes of a [rawIndex].
const (
	// shortRawLen is the longest raw key held in its slot.
	shortRawLen = 16
	// minRawSlots is the size of a new index's table.
	minRawSlots = 8
	// minRawCompact is the garbage a rawIndex's arena may hold however
	// small it is, so that deleting a few long keys does not copy it.
	minRawCompact = 4096
)

// rawIndex maps raw keys (see appendRawKey) to series: a hash table with
// open addressing and linear probing, a power of two in size and at most
// three quarters full. A slot holds the key's hash and, for a key of up to
// 16 bytes, the key itself as two words, so that a lookup compares words
// without following a pointer; a longer key is held in an arena that the
// slots share. A deletion moves back into the hole the entries after it
// that may move, so the table keeps no tombstones, and the arena is
// compacted once deleted keys make up half of it: memory follows the
// entries held, however many come and go.
//
// The hash is [maphash.Bytes] with a seed of the index's own, so keys
// chosen to collide in one index (process names are anyone's to choose)
// do not collide in another.
//
// A rawIndex follows the concurrency rules of its [Interner]. The zero
// value is not usable; use newRawIndex.
type rawIndex struct {
	seed  maphash.Seed
	slots []rawSlot
	n     int    // entries
	arena []byte // keys longer than shortRawLen
	dead  int    // bytes of the arena that deleted keys left behind
}

// rawSlot is one entry of a rawIndex, or an empty slot if key is noKey.
type rawSlot struct {
	hash uint64
	// lo and hi are a short raw key as rawWords returns it; lo is a long
	// one's offset in the arena.
	lo, hi uint64
	n      uint32 // length of the raw key
	key    Key
}

// newRawIndex returns an empty index.
func newRawIndex() *rawIndex {
	return &rawIndex{seed: maphash.MakeSeed(), slots: emptyRawSlots(minRawSlots)}
}

func emptyRawSlots(n int) []rawSlot {
	slots := make([]rawSlot, n)
	for i := range slots {
		slots[i].key = noKey
	}
	return slots
}

// len returns the number of entries.
func (r *rawIndex) len() int { return r.n }

// get returns the series of raw key b. It is find, written out for the
// hot path.
func (r *rawIndex) get(b []byte) (Key, bool) {
	h := maphash.Bytes(r.seed, b)
	lo, hi := rawWords(b)
	mask := uint64(len(r.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &r.slots[i]
		if s.key == noKey {
			return noKey, false
		}
		if s.hash == h && r.match(s, b, lo, hi) {
			return s.key, true
		}
	}
}

// find returns the slot of raw key b, whose hash is h, or else the empty
// slot where b would go.
func (r *rawIndex) find(b []byte, h uint64) (i uint64, ok bool) {
	lo, hi := rawWords(b)
	mask := uint64(len(r.slots) - 1)
	for i = h & mask; ; i = (i + 1) & mask {
		s := &r.slots[i]
		if s.key == noKey {
			return i, false
		}
		if s.hash == h && r.match(s, b, lo, hi) {
			return i, true
		}
	}
}

// match reports whether s holds raw key b, whose words are lo and hi.
func (r *rawIndex) match(s *rawSlot, b []byte, lo, hi uint64) bool {
	if s.n != uint32(len(b)) {
		return false
	}
	if len(b) <= shortRawLen {
		return s.lo == lo && s.hi == hi
	}
	return string(r.arena[s.lo:][:len(b)]) == string(b)
}

// put maps raw key b to k. A key longer than 4 GiB is not kept.
func (r *rawIndex) put(b []byte, k Key) { r.insert(b, maphash.Bytes(r.seed, b), k) }

// insert maps raw key b, whose hash is h, to k.
func (r *rawIndex) insert(b []byte, h uint64, k Key) {
	if uint64(len(b)) > math.MaxUint32 {
		return
	}
	if 4*(r.n+1) > 3*len(r.slots) {
		r.grow()
	}
	i, ok := r.find(b, h)
	if ok {
		r.slots[i].key = k
		return
	}
	lo, hi := rawWords(b)
	if len(b) > shortRawLen {
		lo = uint64(len(r.arena))
		r.arena = append(r.arena, b...)
	}
	r.slots[i] = rawSlot{hash: h, lo: lo, hi: hi, n: uint32(len(b)), key: k}
	r.n++
}

// grow doubles the table.
func (r *rawIndex) grow() {
	old := r.slots
	r.slots = emptyRawSlots(2 * len(old))
	mask := uint64(len(r.slots) - 1)
	for _, s := range old {
		if s.key == noKey {
			continue
		}
		i := s.hash & mask
		for r.slots[i].key != noKey {
			i = (i + 1) & mask
		}
		r.slots[i] = s
	}
}

// delete removes raw key b and reports whether it was there.
func (r *rawIndex) delete(b []byte) bool { return r.deleteHash(b, maphash.Bytes(r.seed, b)) }

// deleteHash removes raw key b, whose hash is h, and reports whether it
// was there.
func (r *rawIndex) deleteHash(b []byte, h uint64) bool {
	i, ok := r.find(b, h)
	if ok {
		r.remove(i)
		r.compact()
	}
	return ok
}

// deleteFunc removes every entry whose series f reports true for, and
// returns how many it removed.
func (r *rawIndex) deleteFunc(f func(Key) bool) int {
	removed := 0
	for i := 0; i < len(r.slots); {
		if k := r.slots[i].key; k != noKey && f(k) {
			// Look at i again: remove moved a later entry there. Entries
			// move only back into a hole, so none skips past i.
			r.remove(uint64(i))
			removed++
			continue
		}
		i++
	}
	r.compact()
	return removed
}

// remove empties slot i and moves back into the hole each later entry of
// the same run that may move, so that no lookup stops short of an entry.
func (r *rawIndex) remove(i uint64) {
	if n := r.slots[i].n; n > shortRawLen {
		r.dead += int(n)
	}
	r.n--
	mask := uint64(len(r.slots) - 1)
	for j := (i + 1) & mask; r.slots[j].key != noKey; j = (j + 1) & mask {
		// The entry at j may fill the hole if the hole lies between its
		// home slot and j.
		if home := r.slots[j].hash & mask; (j-home)&mask >= (j-i)&mask {
			r.slots[i] = r.slots[j]
			i = j
		}
	}
	r.slots[i] = rawSlot{key: noKey}
}

// compact copies the long keys still held into a new arena once deleted
// ones make up half of the old one.
func (r *rawIndex) compact() {
	if r.dead < minRawCompact || 2*r.dead < len(r.arena) {
		return
	}
	arena := make([]byte, 0, len(r.arena)-r.dead)
	for i := range r.slots {
		s := &r.slots[i]
		if s.key != noKey && s.n > shortRawLen {
			off := len(arena)
			arena = append(arena, r.arena[s.lo:][:s.n]...)
			s.lo = uint64(off)
		}
	}
	r.arena, r.dead = arena, 0
}

// rawWords returns a raw key of up to 16 bytes as two little-endian words,
// zero-padded; it returns zeros for a longer key. Together with its length,
// they tell a short key from any other.
func rawWords(b []byte) (lo, hi uint64) {
	switch n := len(b); {
	case n > shortRawLen:
	case n >= 8:
		lo = binary.LittleEndian.Uint64(b)
		hi = binary.LittleEndian.Uint64(b[n-8:]) >> (8 * (16 - n)) // b[8:]
	case n >= 4:
		// Two loads that overlap when n < 8 write the same bytes.
		lo = uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint32(b[n-4:]))<<(8*(n-4))
	case n > 0:
		lo = uint64(b[0]) | uint64(b[n/2])<<(8*(n/2)) | uint64(b[n-1])<<(8*(n-1))
	}
	return lo, hi
}

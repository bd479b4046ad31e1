package shipper

import (
	"bytes"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// checkRawIndex fails t unless r holds exactly want and is sound (see
// checkRawTable).
func checkRawIndex(t testing.TB, r *rawIndex, want map[string]Key) {
	t.Helper()
	if r.len() != len(want) {
		t.Fatalf("len %d, want %d", r.len(), len(want))
	}
	for raw, k := range want {
		if got, ok := r.get([]byte(raw)); !ok || got != k {
			t.Fatalf("get(%q) = %d, %v; want %d", raw, got, ok, k)
		}
	}
	checkRawTable(t, r)
}

// checkRawTable fails t unless r's table is a power of two in size and at
// most three quarters full, each entry is reachable from its home slot
// without crossing an empty one, and the arena holds no more garbage than
// compaction allows. It does not check hashes.
func checkRawTable(t testing.TB, r *rawIndex) {
	t.Helper()
	size := len(r.slots)
	if size < minRawSlots || size&(size-1) != 0 || 4*r.len() > 3*size {
		t.Fatalf("%d entries in %d slots", r.len(), size)
	}
	mask := uint64(size - 1)
	n, live := 0, 0
	for i, s := range r.slots {
		if s.key == noKey {
			continue
		}
		n++
		if s.n > shortRawLen {
			live += int(s.n)
		}
		for j := s.hash & mask; j != uint64(i); j = (j + 1) & mask {
			if r.slots[j].key == noKey {
				t.Fatalf("slot %d: empty slot %d between it and its home", i, j)
			}
		}
	}
	if n != r.len() {
		t.Fatalf("%d slots used, len %d", n, r.len())
	}
	if len(r.arena) != live+r.dead || r.dead >= minRawCompact && 2*r.dead >= len(r.arena) {
		t.Fatalf("arena of %d bytes: %d live, %d dead", len(r.arena), live, r.dead)
	}
}

func TestRawIndex(t *testing.T) {
	r := newRawIndex()
	want := map[string]Key{}
	if _, ok := r.get(nil); ok {
		t.Error("found a key in an empty index")
	}
	// Short and long keys, of every length around the word boundaries.
	for n := range 40 {
		raw := strings.Repeat("x", n)
		r.put([]byte(raw), Key(n))
		want[raw] = Key(n)
	}
	checkRawIndex(t, r, want)
	// Keys that differ in one byte, or by trailing zeros, are distinct.
	for _, raw := range []string{"\x00", "x\x00", "xxxxxxx\x00", "xxxxxxxxxxxxxxx\x00", "xxxxxxxxxxxxxxxy", "yxxxxxxxxxxxxxxxxxxx"} {
		if k, ok := r.get([]byte(raw)); ok {
			t.Errorf("get(%q) found %d", raw, k)
		}
	}
	// put replaces.
	r.put([]byte("xxx"), 100)
	r.put([]byte(strings.Repeat("x", 30)), 101)
	want["xxx"], want[strings.Repeat("x", 30)] = 100, 101
	checkRawIndex(t, r, want)
	for _, raw := range []string{"", "xxx", strings.Repeat("x", 17), strings.Repeat("x", 39)} {
		if !r.delete([]byte(raw)) {
			t.Errorf("delete(%q) found nothing", raw)
		}
		if r.delete([]byte(raw)) {
			t.Errorf("delete(%q) twice", raw)
		}
		delete(want, raw)
	}
	checkRawIndex(t, r, want)
	odd := 0
	for raw, k := range want {
		if k%2 == 1 {
			delete(want, raw)
			odd++
		}
	}
	if n := r.deleteFunc(func(k Key) bool { return k%2 == 1 }); n != odd {
		t.Errorf("deleteFunc removed %d, want %d", n, odd)
	}
	checkRawIndex(t, r, want)
}

// TestRawIndexCollisions gives every key the same home slot, as if their
// hashes collided, then deletes them in turn, each deletion closing up the
// run.
func TestRawIndexCollisions(t *testing.T) {
	for _, same := range []uint64{7, 7 | 0xabcd<<32} { // home, or whole hash
		r := newRawIndex()
		hash := func(raw string) uint64 {
			if same > math.MaxUint32 {
				return same
			}
			return maphash.String(r.seed, raw)&^math.MaxUint32 | same
		}
		var keys []string
		for i := range 1000 {
			raw := "key-" + strconv.Itoa(i)
			if i%3 == 0 {
				raw += strings.Repeat("-long", 4)
			}
			r.insert([]byte(raw), hash(raw), Key(i))
			keys = append(keys, raw)
		}
		rand.New(rand.NewPCG(1, same)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		for n, raw := range keys {
			if !r.deleteHash([]byte(raw), hash(raw)) {
				t.Fatalf("%q not found", raw)
			}
			if r.deleteHash([]byte(raw), hash(raw)) {
				t.Fatalf("%q deleted twice", raw)
			}
			if n%97 == 0 {
				checkRawTable(t, r)
				for _, raw := range keys[n+1:] {
					if _, ok := r.find([]byte(raw), hash(raw)); !ok {
						t.Fatalf("%q lost", raw)
					}
				}
			}
		}
		if r.len() != 0 || len(r.arena) != r.dead {
			t.Errorf("len %d, arena %d after deleting all", r.len(), len(r.arena))
		}
	}
}

// TestRawIndexRandom compares an index with a map under random puts,
// deletes and deletions by key, long keys among them.
func TestRawIndexRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	r := newRawIndex()
	want := map[string]Key{}
	key := func() string {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(4)) // few distinct bytes: many near misses
		}
		return string(b)
	}
	for op := range 200000 {
		raw := key()
		switch rng.IntN(10) {
		case 0, 1, 2:
			if ok := r.delete([]byte(raw)); ok != (want[raw] != 0) {
				t.Fatalf("op %d: delete(%q) = %v", op, raw, ok)
			}
			delete(want, raw)
		case 3:
			if op%1000 == 0 {
				cut := Key(rng.IntN(op + 1))
				r.deleteFunc(func(k Key) bool { return k < cut })
				for raw, k := range want {
					if k < cut {
						delete(want, raw)
					}
				}
			}
		default:
			r.put([]byte(raw), Key(op+1))
			want[raw] = Key(op + 1)
		}
		if k, ok := r.get([]byte(raw)); ok != (want[raw] != 0) || ok && k != want[raw] {
			t.Fatalf("op %d: get(%q) = %d, %v; want %d", op, raw, k, ok, want[raw])
		}
		if op%20000 == 0 {
			checkRawIndex(t, r, want)
		}
	}
	checkRawIndex(t, r, want)
}

// TestRawIndexBounded: keys that come and go, as with eviction of names
// that are never seen again, keep the table and the arena at the size of
// what is held.
func TestRawIndexBounded(t *testing.T) {
	r := newRawIndex()
	const held = 1000
	long := bytes.Repeat([]byte("p"), 100)
	for i := range 100 * held {
		r.put(strconv.AppendInt(long, int64(i), 10), Key(i))
		if i >= held {
			r.delete(strconv.AppendInt(long, int64(i-held), 10))
		}
	}
	if r.len() != held || len(r.slots) > 2048 {
		t.Errorf("%d entries in %d slots", r.len(), len(r.slots))
	}
	if len(r.arena) > 2*held*110+minRawCompact {
		t.Errorf("arena of %d bytes for %d keys", len(r.arena), held)
	}
}

func TestRawWords(t *testing.T) {
	b := []byte("0123456789abcdefg")
	for n := 0; n <= shortRawLen; n++ {
		var want [16]byte
		copy(want[:], b[:n])
		lo, hi := rawWords(b[:n])
		var got [16]byte
		for i := range got {
			got[i] = byte([2]uint64{lo, hi}[i/8] >> (8 * (i % 8)))
		}
		if got != want {
			t.Errorf("rawWords(%q) = %q", b[:n], got)
		}
	}
}

func TestRawIndexAllocs(t *testing.T) {
	r := newRawIndex()
	short, long := []byte("kworker/u8:2"), []byte("a-process-name-longer-than-16")
	r.put(short, 1)
	r.put(long, 2)
	if n := testing.AllocsPerRun(1000, func() { r.get(short); r.get(long) }); n != 0 {
		t.Errorf("get: %v allocs", n)
	}
}

func FuzzRawIndex(f *testing.F) {
	f.Add([]byte("\x05bash\x00\x11a-long-process-name\x02x"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		// Each op is a length byte and that many key bytes; an odd length
		// byte deletes, an even one puts.
		r := newRawIndex()
		want := map[string]Key{}
		for i := 0; len(ops) > 0; i++ {
			n := min(int(ops[0]>>1), len(ops)-1)
			del, raw := ops[0]&1 == 1, string(ops[1:1+n])
			ops = ops[1+n:]
			if del {
				r.delete([]byte(raw))
				delete(want, raw)
			} else {
				r.put([]byte(raw), Key(i))
				want[raw] = Key(i)
			}
		}
		checkRawIndex(t, r, want)
	})
}

// BenchmarkRawIndex looks up 10,000 short keys in a rawIndex and in the
// map it replaced, in the order they were added and in random order.
func BenchmarkRawIndex(b *testing.B) {
	keys := make([][]byte, 10000)
	for i := range keys {
		keys[i] = []byte(strconv.Itoa(i))
	}
	shuffled := slices.Clone(keys)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	r := newRawIndex()
	m := make(map[string]Key)
	for i, k := range keys {
		r.put(k, Key(i))
		m[string(k)] = Key(i)
	}
	for _, order := range []struct {
		name string
		keys [][]byte
	}{{"added", keys}, {"random", shuffled}} {
		b.Run("index/"+order.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				rawSink, _ = r.get(order.keys[i])
				if i++; i == len(order.keys) {
					i = 0
				}
			}
		})
		b.Run("map/"+order.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				rawSink = m[string(order.keys[i])]
				if i++; i == len(order.keys) {
					i = 0
				}
			}
		})
	}
}

// rawSink keeps benchmarked lookups from being optimised away.
var rawSink Key

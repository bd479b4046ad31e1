package ringbuf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// fakeRingSize is the size of the data area of fakeKernelRing.
const fakeRingSize = 1024

// fakeKernelRing returns a kernelRing over ordinary memory holding samples
// (headers and data, as the kernel lays them out) from position start, with
// the producer position after them, rounded down to 8 bytes as the kernel
// keeps it.
func fakeKernelRing(samples []byte, start uint16) *kernelRing {
	mask := uintptr(fakeRingSize - 1)
	data := make([]byte, 2*fakeRingSize)
	pos := uintptr(start) &^ 7
	n := min(len(samples), fakeRingSize) &^ 7
	for i := range n {
		data[(pos+uintptr(i))&mask] = samples[i]
	}
	copy(data[fakeRingSize:], data[:fakeRingSize]) // the second mapping
	cons, prod := pos, pos+uintptr(n)
	return &kernelRing{cons: &cons, prod: &prod, data: data, mask: mask}
}

// sample returns a sample header and data, padded to 8 bytes.
func sample(flags uint32, data ...byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(data))|flags)
	b = append(b, 0, 0, 0, 0)
	b = append(b, data...)
	for len(b)%8 != 0 {
		b = append(b, 0xee)
	}
	return b
}

// refSamples parses samples as the kernel lays them out: the data of each
// committed sample up to the first busy one, and whether the bytes ran out
// inside a sample.
func refSamples(b []byte) (out [][]byte, truncated bool) {
	b = b[:min(len(b), fakeRingSize)&^7]
	for len(b) > 0 {
		if len(b) < 8 {
			return out, true
		}
		hdr := binary.LittleEndian.Uint32(b)
		if hdr&sampleBusy != 0 {
			return out, false
		}
		n := int(hdr &^ (sampleBusy | sampleDiscard))
		size := 8 + (n+7)&^7
		if size > len(b) {
			return out, true
		}
		if hdr&sampleDiscard == 0 {
			out = append(out, b[8:8+n])
		}
		b = b[size:]
	}
	return out, false
}

func TestKernelRingNext(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name    string
		ring    []byte
		start   uint16
		want    []string
		wantErr bool
	}{
		{"empty", nil, 0, nil, false},
		{"two", cat(sample(0, 'a', 'b', 'c'), sample(0, 'd')), 0, []string{"abc", "d"}, false},
		{"zero length", cat(sample(0), sample(0, 'x')), 0, []string{"", "x"}, false},
		{"discarded", cat(sample(sampleDiscard, 'a'), sample(0, 'b')), 0, []string{"b"}, false},
		{"busy", cat(sample(0, 'a'), sample(sampleBusy, 'b'), sample(0, 'c')), 0, []string{"a"}, false},
		{"wraps", cat(sample(0, 'a'), sample(0, []byte("0123456789abcdef")...)), fakeRingSize - 16, []string{"a", "0123456789abcdef"}, false},
		{"cut header", cat(sample(0, 'a'), []byte{4, 0, 0, 0}), 0, []string{"a"}, false}, // 4 bytes are below the producer position
		{"cut data", cat(sample(0, 'a'), sample(0, []byte("0123456789")...)[:16]), 0, []string{"a"}, true},
		{"huge", cat(sample(0, 'a'), []byte{0xff, 0xff, 0xff, 0x3f, 0, 0, 0, 0}), 0, []string{"a"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := fakeKernelRing(tc.ring, tc.start)
			c := k.begin()
			var got []string
			for {
				s, ok := c.next()
				if !ok {
					if c.skip() {
						continue
					}
					break
				}
				got = append(got, string(s))
			}
			k.release(&c)
			err := c.err
			if (err != nil) != tc.wantErr || len(got) != len(tc.want) {
				t.Fatalf("got %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("sample %d: %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestCursorCommitRace has a sample committed between next finding it
// busy and skip looking again: skip must leave it for next, not skip it.
func TestCursorCommitRace(t *testing.T) {
	k := fakeKernelRing(bytes.Join([][]byte{sample(sampleBusy, 'a'), sample(0, 'b')}, nil), 0)
	c := k.begin()
	if s, ok := c.next(); ok {
		t.Fatalf("next returned busy sample %q", s)
	}
	k.data[3] &^= 0x80 // the kernel clears the busy bit, the top bit of the little-endian length
	if !c.skip() {
		t.Fatalf("skip stopped at a committed sample: %v", c.err)
	}
	var got []string
	for {
		s, ok := c.next()
		if !ok {
			if c.skip() {
				continue
			}
			break
		}
		got = append(got, string(s))
	}
	if len(got) != 2 || got[0] != "a" || got[1] != "b" || c.err != nil {
		t.Errorf("got %q, %v; want [a b]", got, c.err)
	}
}

// fuzzRecord is the record FuzzDrain decodes: 16 bytes, kind 1.
type fuzzRecord struct {
	Kind uint32
	Val  uint64
}

var errFuzzRecord = errors.New("bad record")

func decodeFuzzRecord(b []byte, r *fuzzRecord) error {
	if len(b) != 16 || binary.LittleEndian.Uint32(b) != 1 {
		return errFuzzRecord
	}
	r.Kind = 1
	r.Val = binary.LittleEndian.Uint64(b[8:])
	return nil
}

// FuzzDrain feeds arbitrary bytes to the drain path, as the contents of a
// kernel ring: samples are parsed and decoded without a panic, the
// malformed ones are counted, and the rest come out as a reference parse
// says.
func FuzzDrain(f *testing.F) {
	rec := func(val byte) []byte {
		return sample(0, 1, 0, 0, 0, 0, 0, 0, 0, val, 0, 0, 0, 0, 0, 0, 0)
	}
	f.Add(bytes.Join([][]byte{rec(1), rec(2), sample(0, 1, 2, 3), rec(3)}, nil), uint16(0))
	f.Add(bytes.Join([][]byte{rec(1), sample(sampleDiscard, 9), rec(2), sample(sampleBusy, 1)}, nil), uint16(1000))
	f.Add(bytes.Repeat(rec(7), 200), uint16(8))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1}, uint16(0))
	f.Fuzz(func(t *testing.T, ring []byte, start uint16) {
		d := &Drainer[fuzzRecord]{
			ring:   fakeKernelRing(ring, start),
			decode: decodeFuzzRecord,
			batch:  make([]fuzzRecord, DrainBatch),
		}
		var got []fuzzRecord
		hand := func(b []fuzzRecord) { got = append(got, b...) }
		var err error
		for range fakeRingSize {
			var full bool
			full, err = d.step(nil, hand, DrainBatch)
			if err != nil || !full {
				break
			}
		}
		d.publish()

		want, truncated := refSamples(ring)
		var wantRecs []fuzzRecord
		var wantBytes, wantBad uint64
		for _, s := range want {
			wantBytes += uint64(len(s))
			var r fuzzRecord
			if decodeFuzzRecord(s, &r) != nil {
				wantBad++
				continue
			}
			wantRecs = append(wantRecs, r)
		}
		if (err != nil) != truncated {
			t.Errorf("error %v, want one: %v", err, truncated)
		}
		st := d.Stats()
		if st != (DrainStats{Records: uint64(len(wantRecs)), Bytes: wantBytes, DecodeErrors: wantBad}) {
			t.Errorf("Stats %+v, want %d records, %d bytes, %d decode errors", st, len(wantRecs), wantBytes, wantBad)
		}
		if len(got) != len(wantRecs) {
			t.Fatalf("%d records handed on, want %d", len(got), len(wantRecs))
		}
		for i := range got {
			if got[i] != wantRecs[i] {
				t.Errorf("record %d: %+v, want %+v", i, got[i], wantRecs[i])
			}
		}
		if k := d.ring; *k.cons > *k.prod {
			t.Errorf("consumer position %d past producer position %d", *k.cons, *k.prod)
		}
	})
}

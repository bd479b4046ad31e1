package ringbuf

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"testing"
	"time"

	kring "github.com/cilium/ebpf/ringbuf"
)

// fakeReader is a kernel ring holding samples, read as cilium's
// ringbuf.Reader reads one whose deadline has passed (but for
// Record.Remaining, which it leaves alone). After the samples it returns
// err, if set, or else os.ErrDeadlineExceeded.
type fakeReader struct {
	samples [][]byte
	err     error
}

var _ reader = (*fakeReader)(nil)

func (f *fakeReader) ReadInto(rec *kring.Record) error {
	if len(f.samples) == 0 {
		if f.err != nil {
			return f.err
		}
		return os.ErrDeadlineExceeded
	}
	rec.RawSample = append(rec.RawSample[:0], f.samples[0]...)
	f.samples = f.samples[1:]
	return nil
}

func (f *fakeReader) SetDeadline(time.Time) {}
func (f *fakeReader) Flush() error          { return nil }
func (f *fakeReader) AvailableBytes() int   { return 0 }
func (f *fakeReader) BufferSize() int       { return 4096 }
func (f *fakeReader) Close() error          { return nil }

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

// fakeSamples splits b into samples, each a length byte and as many bytes
// of data as follow, up to 32. A length byte of 0xff stops the samples
// with a read error.
func fakeSamples(b []byte) (samples [][]byte, failed bool) {
	for len(b) > 0 {
		if b[0] == 0xff {
			return samples, true
		}
		n := min(int(b[0])%33, len(b)-1)
		samples = append(samples, b[1:1+n])
		b = b[1+n:]
	}
	return samples, false
}

// FuzzDrain feeds arbitrary samples to a Run that reads to the end of the
// ring: they are decoded without a panic, the malformed ones are counted,
// and the rest come out in order; a read error ends the Run, after the
// records read before it.
func FuzzDrain(f *testing.F) {
	rec := func(val byte) []byte {
		return []byte{16, 1, 0, 0, 0, 0, 0, 0, 0, val, 0, 0, 0, 0, 0, 0, 0}
	}
	f.Add(bytes.Join([][]byte{rec(1), rec(2), {3, 1, 2, 3}, rec(3)}, nil))
	f.Add(bytes.Join([][]byte{rec(1), {0}, rec(2), {0xff}, rec(4)}, nil))
	f.Add(bytes.Repeat(rec(7), 300)) // more than a batch
	f.Add([]byte{0xfe, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		samples, failed := fakeSamples(in)
		fake := &fakeReader{samples: samples}
		if failed {
			fake.err = io.ErrUnexpectedEOF
		}
		d := newDrainer(fake, decodeFuzzRecord, DrainOptions{})
		var got []fuzzRecord
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := d.Run(ctx, func(r *fuzzRecord) { got = append(got, *r) })

		var want []fuzzRecord
		var wantBytes, wantBad uint64
		for _, s := range samples {
			wantBytes += uint64(len(s))
			var r fuzzRecord
			if decodeFuzzRecord(s, &r) != nil {
				wantBad++
				continue
			}
			want = append(want, r)
		}
		if failed != errors.Is(err, io.ErrUnexpectedEOF) || !failed && err != nil {
			t.Errorf("Run: %v, want a read error: %v", err, failed)
		}
		st := d.Stats()
		if st != (DrainStats{Records: uint64(len(want)), Bytes: wantBytes, DecodeErrors: wantBad}) {
			t.Errorf("Stats %+v, want %d records, %d bytes, %d decode errors", st, len(want), wantBytes, wantBad)
		}
		if len(got) != len(want) {
			t.Fatalf("%d records handed on, want %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("record %d: %+v, want %+v", i, got[i], want[i])
			}
		}
	})
}

func TestPollWait(t *testing.T) {
	for _, tc := range []struct{ poll, ms time.Duration }{
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{10 * time.Millisecond, 10},
	} {
		// The reader's wait: whole milliseconds to the deadline, rounded
		// down, set a little after now.
		w := pollWait(tc.poll)
		if got := (w - time.Microsecond).Milliseconds(); got != int64(tc.ms) {
			t.Errorf("Poll %v waits %dms, want %d", tc.poll, got, tc.ms)
		}
		if got := w.Milliseconds(); got != int64(tc.ms) {
			t.Errorf("Poll %v waits %dms at once, want %d", tc.poll, got, tc.ms)
		}
	}
	if w := pollWait(math.MaxInt64); w < 100*365*24*time.Hour {
		t.Errorf("the longest Poll waits %v", w)
	}
}

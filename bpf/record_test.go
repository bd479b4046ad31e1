package bpf

import (
	"encoding/binary"
	"errors"
	"testing"
)

func processSample(kind Kind, comm string) []byte {
	b := make([]byte, ProcessRecordSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(kind))
	le.PutUint32(b[4:], 4)
	le.PutUint64(b[8:], 123456789)
	le.PutUint32(b[16:], 42)
	le.PutUint32(b[20:], 41)
	le.PutUint32(b[24:], 7)
	le.PutUint32(b[28:], 256)
	copy(b[32:], comm)
	return b
}

func TestDecodeProcess(t *testing.T) {
	var r Record
	var p ProcessRecord
	if err := DecodeRecord(processSample(KindExit, "bash"), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Process(&p); err != nil {
		t.Fatal(err)
	}
	want := Header{Kind: KindExit, Rate: 4, TimeNS: 123456789}
	if p.Header != want || p.PID != 42 || p.TGID != 41 || p.Other != 7 || p.Code != 256 || !p.Failed() || string(p.Name()) != "bash" {
		t.Errorf("decoded %+v name %q", p, p.Name())
	}
	if err := DecodeRecord(processSample(KindExec, "0123456789abcdef"), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Process(&p); err != nil || string(p.Name()) != "0123456789abcdef" {
		t.Errorf("a 16-byte comm without NUL: name %q, err %v", p.Name(), err)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	var r Record
	good := processSample(KindExec, "x")
	for name, bad := range map[string][]byte{
		"empty":        nil,
		"short header": good[:HeaderSize-1],
		"short":        good[:ProcessRecordSize-1],
		"long":         append(processSample(KindExec, "x"), 0),
		"kind 0":       processSample(0, "x"),
		"kind 99":      processSample(99, "x"),
		"kind 2^32-1":  processSample(1<<32-1, "x"),
	} {
		if err := DecodeRecord(bad, &r); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: DecodeRecord = %v, want ErrRecord", name, err)
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	b := processSample(KindFork, "bash")
	var r Record
	var p ProcessRecord
	if n := testing.AllocsPerRun(100, func() {
		_ = DecodeRecord(b, &r)
		_ = r.Process(&p)
	}); n != 0 {
		t.Errorf("decoding allocates %v times", n)
	}
}

// FuzzDecodeRecord feeds arbitrary bytes to the decoders: no panic, and
// nothing accepted that is not a known kind of its exact size.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(processSample(KindExec, "bash"))
	f.Add([]byte{})
	f.Add(make([]byte, MaxRecordSize+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := DecodeRecord(b, &r); err != nil {
			return
		}
		if int(r.Kind) >= len(recordSizes) || len(b) != int(recordSizes[r.Kind]) || len(r.Bytes()) != len(b) || r.Rate == 0 {
			t.Errorf("accepted %x as %+v", b, r.Header)
		}
		var p ProcessRecord
		if err := r.Process(&p); err == nil && len(p.Name()) > CommLen {
			t.Errorf("name of %d bytes", len(p.Name()))
		}
	})
}

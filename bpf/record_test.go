package bpf

import (
	"encoding/binary"
	"errors"
	"testing"
)

func execSample(kind uint32, comm string) []byte {
	b := make([]byte, ExecRecordSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], kind)
	le.PutUint32(b[4:], 4)
	le.PutUint64(b[8:], 123456789)
	le.PutUint32(b[16:], 42)
	le.PutUint32(b[20:], 41)
	copy(b[24:], comm)
	return b
}

func TestDecodeExec(t *testing.T) {
	var r ExecRecord
	if err := DecodeExec(execSample(1, "bash"), &r); err != nil {
		t.Fatal(err)
	}
	want := Header{Kind: KindExec, Rate: 4, TimeNS: 123456789}
	if r.Header != want || r.PID != 42 || r.TGID != 41 || string(r.Name()) != "bash" {
		t.Errorf("decoded %+v name %q", r, r.Name())
	}
	if err := DecodeExec(execSample(1, "0123456789abcdef"), &r); err != nil || string(r.Name()) != "0123456789abcdef" {
		t.Errorf("a 16-byte comm without NUL: name %q, err %v", r.Name(), err)
	}
	for _, bad := range [][]byte{nil, execSample(1, "x")[:ExecRecordSize-1], append(execSample(1, "x"), 0), execSample(2, "x")} {
		if err := DecodeExec(bad, &r); !errors.Is(err, ErrRecord) {
			t.Errorf("DecodeExec(%d bytes) = %v, want ErrRecord", len(bad), err)
		}
	}
}

func TestDecodeExecAllocs(t *testing.T) {
	b := execSample(1, "bash")
	var r ExecRecord
	if n := testing.AllocsPerRun(100, func() { _ = DecodeExec(b, &r) }); n != 0 {
		t.Errorf("DecodeExec allocates %v times", n)
	}
}

func FuzzDecodeExec(f *testing.F) {
	f.Add(execSample(1, "bash"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r ExecRecord
		if err := DecodeExec(b, &r); err == nil && (len(b) != ExecRecordSize || r.Kind != KindExec || len(r.Name()) > CommLen) {
			t.Errorf("accepted %x as %+v", b, r)
		}
	})
}

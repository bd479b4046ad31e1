package shipper

import (
	"strings"
	"testing"
)

func TestAppendName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"host.process.exec", "host.process.exec"},
		{"a-b c|d\ne:f#g,h@i", "a_b_c_d_e_f_g_h_i"},
		{"9lives", "m9lives"},
		{"_x", "m_x"},
		{"", "m"},
		{"ünï", "m__n__"},
		{strings.Repeat("a", 300), strings.Repeat("a", MaxNameLen)},
	} {
		if got := string(AppendName(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("AppendName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAppendTag(t *testing.T) {
	for _, tc := range []struct{ k, v, want string }{
		{"comm", "sh", "comm:sh"},
		{"comm", "", "comm:" + EmptyTagValue},
		{"comm", "a:b,c|d#e\nf g=h@i", "comm:a_b_c_d_e_f_g_h_i"},
		{"1k", "v", "t1k:v"},
		{"k", OverflowTagValue, "k:" + OverflowTagValue + "_"},
		{"k", "x/y.z-w_1", "k:x/y.z-w_1"},
		{"k", strings.Repeat("v", 300), "k:" + strings.Repeat("v", MaxTagLen-2)},
	} {
		if got := string(appendTag(nil, []byte(tc.k), []byte(tc.v))); got != tc.want {
			t.Errorf("appendTag(%q, %q) = %q, want %q", tc.k, tc.v, got, tc.want)
		}
	}
}

// TestSanitisedBytes checks every byte value: no output byte is a wire
// separator.
func TestSanitisedBytes(t *testing.T) {
	for c := range 256 {
		b := []byte{'a', byte(c), 'z'}
		for _, out := range [][]byte{AppendName(nil, b), AppendTagKey(nil, b), AppendTagValue(nil, b)} {
			if strings.ContainsAny(string(out), "\n\r|,#:@= \x00") {
				t.Errorf("byte %#x sanitised to %q", c, out)
			}
		}
	}
}

func BenchmarkAppendTagValue(b *testing.B) {
	buf := make([]byte, 0, 64)
	v := []byte("kworker/u8:2-ev")
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendTagValue(buf[:0], v)
	}
}

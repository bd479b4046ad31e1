package shipper

import (
	"math"
	"strconv"
)

// digits2 holds "00" to "99", for writing two digits at a time.
const digits2 = "0001020304050607080910111213141516171819" +
	"2021222324252627282930313233343536373839" +
	"4041424344454647484950515253545556575859" +
	"6061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// appendInt appends v in decimal, like strconv.AppendInt but writing the
// digits in place, which is faster for the short numbers of metric lines.
func appendInt(dst []byte, v int64) []byte {
	l, n := len(dst), intLen(v)
	if cap(dst)-l < n {
		dst = append(dst, make([]byte, n)...)
	} else {
		dst = dst[:l+n]
	}
	putInt(dst[l:], v)
	return dst
}

// maxIntLen is the longest an int64 is in decimal: "-9223372036854775808".
const maxIntLen = 20

// intLen returns the length of v in decimal, with its sign.
func intLen(v int64) int {
	if v < 0 {
		return 1 + decimalLen(-uint64(v))
	}
	return decimalLen(uint64(v))
}

// putInt writes v in decimal to b, which is exactly [intLen](v) bytes long,
// two digits at a time from the last.
func putInt(b []byte, v int64) {
	u, i := uint64(v), len(b)
	if v < 0 {
		b[0] = '-'
		u = -u
	}
	for ; u >= 10; i -= 2 {
		r := u % 100 * 2
		b[i-2], b[i-1] = digits2[r], digits2[r+1]
		u /= 100
	}
	if u > 0 || v == 0 {
		b[i-1] = byte('0' + u)
	}
}

// decimalLen returns the number of decimal digits of u.
func decimalLen(u uint64) int {
	n := 1
	for u >= 10000 {
		u /= 10000
		n += 4
	}
	for u >= 10 {
		u /= 10
		n++
	}
	return n
}

// appendValue appends v in the shortest form that parses back to it.
func appendValue(b []byte, v float64) []byte {
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return appendInt(b, int64(v))
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendRate appends "|@r" with r a sample rate that receivers read back as
// weight n: 1/r parses to a float in [n, n+1), since statsd_exporter and
// Telegraf truncate 1/r to an integer number of observations. It appends
// nothing for n ≤ 1.
func appendRate(b []byte, n uint64) []byte {
	if n <= 1 {
		return b
	}
	b = append(b, "|@"...)
	start := len(b)
	r := 1 / float64(n)
	for range 64 {
		b = strconv.AppendFloat(b[:start], r, 'f', -1, 64)
		back, _ := strconv.ParseFloat(string(b[start:]), 64)
		if w := 1 / back; w >= float64(n) && w < float64(n)+1 {
			break
		}
		r = math.Nextafter(r, 0)
	}
	return b
}

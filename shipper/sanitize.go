package shipper

// Limits from the DogStatsD rules, in bytes.
const (
	// MaxNameLen is the longest metric name; longer names are cut.
	MaxNameLen = 200
	// MaxTagLen is the longest "key:value" tag; longer values are cut.
	MaxTagLen = 200
	// maxTagKeyLen is the longest tag key, so that a value always has room.
	maxTagKeyLen = 100
)

// Replacement text for names and tags the rules cannot take as they are.
const (
	// EmptyTagValue stands in for a tag value that is empty.
	EmptyTagValue = "none"
	// OverflowTagValue replaces the variable tag values of a series that did
	// not fit in the cardinality budget. No sanitised value equals it: a
	// value that would is given a trailing '_'.
	OverflowTagValue = "bpfstatd_overflow"
	// namePrefix starts a name or tag key whose first byte is not a letter.
	namePrefix = 'm'
	tagPrefix  = 't'
)

// byteSet marks the bytes that may appear as they are.
type byteSet [256]bool

func newByteSet(extra string) (s byteSet) {
	for c := 'a'; c <= 'z'; c++ {
		s[c], s[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		s[c] = true
	}
	for _, c := range extra {
		s[c] = true
	}
	return s
}

var (
	// nameByte: DogStatsD metric names hold ASCII letters, digits, '_' and '.'.
	nameByte = newByteSet("_.")
	// tagByte: tag keys and values hold letters, digits, '_', '-', '.' and '/',
	// never one of the wire's separators '\n', '|', ',', '#', ':', '@', '='
	// or a space.
	tagByte = newByteSet("_-./")
)

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// appendIdent appends b with every byte outside ok replaced by '_', prefixed
// with prefix if it does not start with a letter, and cut to limit bytes.
func appendIdent(dst, b []byte, ok *byteSet, prefix byte, limit int) []byte {
	start := len(dst)
	if len(b) == 0 || !isLetter(b[0]) {
		dst = append(dst, prefix)
	}
	for _, c := range b {
		if len(dst)-start == limit {
			break
		}
		if !ok[c] {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// AppendName appends the sanitised form of the metric name to dst: ASCII
// letters, digits, '_' and '.' stay, every other byte becomes '_', a name
// that does not start with a letter gets an 'm' in front, and the result is
// cut to [MaxNameLen] bytes.
func AppendName(dst, name []byte) []byte {
	return appendIdent(dst, name, &nameByte, namePrefix, MaxNameLen)
}

// AppendTagKey appends the sanitised form of the tag key to dst: bytes
// outside [A-Za-z0-9_./-] become '_', a key that does not start with a
// letter gets a 't' in front, and the result is cut to 100 bytes.
func AppendTagKey(dst, key []byte) []byte {
	return appendIdent(dst, key, &tagByte, tagPrefix, maxTagKeyLen)
}

// AppendTagValue appends the sanitised form of the tag value v to dst: each
// byte outside [A-Za-z0-9_./-] becomes '_', so the result can never end a
// line, start a field or split a tag. An empty value becomes
// [EmptyTagValue].
func AppendTagValue(dst, v []byte) []byte {
	if len(v) == 0 {
		return append(dst, EmptyTagValue...)
	}
	for _, c := range v {
		if !tagByte[c] {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// appendTag appends the tag "key:value", both sanitised, cut to
// [MaxTagLen] bytes, with a value equal to [OverflowTagValue] given a
// trailing '_'.
func appendTag(dst, key, value []byte) []byte {
	start := len(dst)
	dst = AppendTagKey(dst, key)
	dst = append(dst, ':')
	vstart := len(dst)
	dst = AppendTagValue(dst, value)
	if len(dst)-start > MaxTagLen {
		dst = dst[:start+MaxTagLen]
	}
	if string(dst[vstart:]) == OverflowTagValue {
		dst = append(dst, '_')
	}
	return dst
}

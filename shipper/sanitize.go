package shipper

// tagValueByte marks the bytes that may appear in a tag value as they are:
// ASCII letters and digits, '_', '-', '.', and '/'. Every other byte,
// including the wire's separators '\n', '|', ',', '#', ':' and '@', becomes
// '_'.
var tagValueByte = func() (ok [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		ok[c], ok[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		ok[c] = true
	}
	for _, c := range "_-./" {
		ok[c] = true
	}
	return ok
}()

// EmptyTagValue stands in for a value that is empty.
const EmptyTagValue = "none"

// AppendTagValue appends the sanitised form of the tag value v to dst: each
// byte outside [A-Za-z0-9_./-] becomes '_', so the result can never end a
// line, start a field or split a tag. An empty value becomes
// [EmptyTagValue].
func AppendTagValue(dst, v []byte) []byte {
	if len(v) == 0 {
		return append(dst, EmptyTagValue...)
	}
	for _, c := range v {
		if !tagValueByte[c] {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

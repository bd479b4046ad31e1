package shipper

// Handle is a small integer standing for an interned tag.
type Handle uint32

// Interner maps raw values, such as process names, to handles of sanitised
// "key:value" tags. Looking up a value seen before does not allocate. It is
// not safe for concurrent use.
type Interner struct {
	key     string
	handles map[string]Handle
	tags    []string
}

// NewInterner returns an Interner of tags named key.
func NewInterner(key string) *Interner {
	return &Interner{key: key, handles: make(map[string]Handle)}
}

// Intern returns the handle of the tag key:value, sanitising value the
// first time it is seen.
func (in *Interner) Intern(value []byte) Handle {
	if h, ok := in.handles[string(value)]; ok {
		return h
	}
	tag := make([]byte, 0, len(in.key)+1+len(value))
	tag = append(append(tag, in.key...), ':')
	tag = AppendTagValue(tag, value)
	h := Handle(len(in.tags))
	in.tags = append(in.tags, string(tag))
	in.handles[string(value)] = h
	return h
}

// Tag returns the sanitised tag of h.
func (in *Interner) Tag(h Handle) string { return in.tags[h] }

// Len returns the number of distinct values interned.
func (in *Interner) Len() int { return len(in.tags) }

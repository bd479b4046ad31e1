package shipper

// Counters sums int64 deltas per interned handle over a flush interval. It
// is not safe for concurrent use.
type Counters struct {
	sums []int64
}

// Add adds delta to the counter of h.
func (c *Counters) Add(h Handle, delta int64) {
	if int(h) >= len(c.sums) {
		c.grow(h)
	}
	c.sums[h] += delta
}

func (c *Counters) grow(h Handle) {
	n := max(2*len(c.sums), int(h)+1, 16)
	c.sums = append(c.sums, make([]int64, n-len(c.sums))...)
}

// Each calls fn for every counter with a non-zero sum and resets it.
func (c *Counters) Each(fn func(h Handle, sum int64)) {
	for h, sum := range c.sums {
		if sum != 0 {
			c.sums[h] = 0
			fn(Handle(h), sum)
		}
	}
}

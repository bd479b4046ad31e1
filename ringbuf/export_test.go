package ringbuf

// DrainOne reads at most one record from the kernel ring and pushes it into
// dst along the path RunInto takes for every record, without waiting. It
// returns how many records it read.
func (d *Drainer[T]) DrainOne(dst Sink[T]) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := dst.sinkRing()
	before := d.count.Records
	_, err := d.step(r, func(b []T) { d.push(r, b) }, 1)
	d.publish()
	return int(d.count.Records - before), err
}

// DrainSpin reads with the batch path only, never waiting, handing each
// record to emit, until stop returns true and then until the ring is empty.
// It chases a producer as closely as a reader can.
func (d *Drainer[T]) DrainSpin(stop func() bool, emit func(*T)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	hand := func(b []T) {
		for i := range b {
			emit(&b[i])
		}
	}
	for {
		stopping := stop()
		full, err := d.step(nil, hand, DrainBatch)
		if err != nil || stopping && !full {
			d.publish()
			return err
		}
	}
}

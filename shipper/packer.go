package shipper

import (
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Payload limits for one datagram.
const (
	// UDPPayload fits an IPv4 UDP datagram into a 1500-byte MTU.
	UDPPayload = 1432
	// MinPayload is the smallest payload a Packer accepts.
	MinPayload = 64
)

// ErrLineTooLong reports a line that does not fit in one datagram.
var ErrLineTooLong = errors.New("line longer than the payload limit")

// Packer packs newline-terminated StatsD lines into datagrams of at most a
// payload limit, never splitting a line, and writes each datagram with one
// Write call. It is not safe for concurrent use.
type Packer struct {
	w     io.Writer
	limit int
	buf   []byte
	line  []byte

	// Datagrams and Lines count what was written; Dropped counts lines that
	// were lost, to an error or for being too long.
	Datagrams, Lines, Dropped uint64
}

// NewPacker returns a Packer writing datagrams of at most limit bytes to w.
func NewPacker(w io.Writer, limit int) (*Packer, error) {
	if limit < MinPayload {
		return nil, fmt.Errorf("create packer: payload limit %d is below %d bytes", limit, MinPayload)
	}
	return &Packer{w: w, limit: limit, buf: make([]byte, 0, limit), line: make([]byte, 0, 256)}, nil
}

// Counter packs the line "name:value|c" with the given tags, which must
// already be sanitised; tags may be empty.
func (p *Packer) Counter(name string, value int64, tags ...string) error {
	l := append(p.line[:0], name...)
	l = append(l, ':')
	l = strconv.AppendInt(l, value, 10)
	l = append(l, "|c"...)
	for i, t := range tags {
		if i == 0 {
			l = append(l, "|#"...)
		} else {
			l = append(l, ',')
		}
		l = append(l, t...)
	}
	l = append(l, '\n')
	p.line = l
	return p.add(l)
}

// add appends one whole line, first writing out the datagram in progress if
// the line does not fit in it.
func (p *Packer) add(line []byte) error {
	if len(line) > p.limit {
		p.Dropped++
		return fmt.Errorf("pack %q: %w", line[:min(len(line), 40)], ErrLineTooLong)
	}
	var err error
	if len(p.buf)+len(line) > p.limit {
		err = p.Flush()
	}
	p.buf = append(p.buf, line...)
	p.Lines++
	return err
}

// Flush writes the datagram in progress, if any.
func (p *Packer) Flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	_, err := p.w.Write(p.buf)
	if err != nil {
		p.Dropped += uint64(countLines(p.buf))
		err = fmt.Errorf("write datagram: %w", err)
	} else {
		p.Datagrams++
	}
	p.buf = p.buf[:0]
	return err
}

func countLines(b []byte) (n int) {
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

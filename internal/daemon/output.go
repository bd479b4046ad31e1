package daemon

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
)

// Output is where metrics are shipped: standard output, or a UDP address.
type Output struct {
	Scheme string // "stdout" or "udp"
	Addr   string // host:port for udp
}

// maxUDPPayload is the largest UDP payload over IPv4.
const maxUDPPayload = 65507

// ParseOutput parses "stdout" or "udp://HOST:PORT".
func ParseOutput(s string) (Output, error) {
	if s == "stdout" || s == "-" {
		return Output{Scheme: "stdout"}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return Output{}, fmt.Errorf("%q is not stdout or udp://HOST:PORT: %w", s, err)
	}
	if u.Scheme != "udp" {
		return Output{}, fmt.Errorf("%q: unsupported scheme %q (want stdout or udp://HOST:PORT)", s, u.Scheme)
	}
	if u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return Output{}, fmt.Errorf("%q: want udp://HOST:PORT and nothing more", s)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return Output{}, fmt.Errorf("%q: missing host", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return Output{}, fmt.Errorf("%q: port must be a number from 1 to 65535", s)
	}
	return Output{Scheme: "udp", Addr: u.Host}, nil
}

func (o Output) String() string {
	if o.Scheme == "stdout" {
		return "stdout"
	}
	return o.Scheme + "://" + o.Addr
}

// MaxPayload is the largest datagram the output can carry.
func (o Output) MaxPayload() int {
	if o.Scheme == "udp" {
		return maxUDPPayload
	}
	return 1 << 20
}

// open returns the writer that receives one datagram per Write.
func (o Output) open(stdout io.Writer) (io.WriteCloser, error) {
	switch o.Scheme {
	case "stdout":
		return nopCloser{stdout}, nil
	case "udp":
		c, err := net.Dial("udp", o.Addr)
		if err != nil {
			return nil, fmt.Errorf("open output %s: %w", o, err)
		}
		return c, nil
	}
	return nil, errors.New("open output: no output configured")
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

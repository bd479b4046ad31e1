package daemon

import (
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/bpfstatd/bpfstatd/shipper"
)

// Output is where metrics are shipped: standard output, a UDP address, or
// a Unix datagram socket.
type Output struct {
	Scheme string // "stdout", "udp" or "unix"
	Addr   string // HOST:PORT for udp, the socket's path for unix
}

// Largest payloads the transports carry.
const (
	maxUDPPayload  = 65507
	maxUnixPayload = 65536
)

// ParseOutput parses "stdout", "udp://HOST:PORT" or "unix:///PATH".
func ParseOutput(s string) (Output, error) {
	if s == "stdout" || s == "-" {
		return Output{Scheme: "stdout"}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return Output{}, fmt.Errorf("%q is not stdout, udp://HOST:PORT or unix:///PATH: %w", s, err)
	}
	if u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return Output{}, fmt.Errorf("%q: want stdout, udp://HOST:PORT or unix:///PATH and nothing more", s)
	}
	switch u.Scheme {
	case "udp":
		if u.Path != "" {
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
	case "unix", "unixgram":
		if u.Host != "" || len(u.Path) < 2 || u.Path[0] != '/' {
			return Output{}, fmt.Errorf("%q: want unix:///ABSOLUTE/PATH", s)
		}
		return Output{Scheme: "unix", Addr: u.Path}, nil
	}
	return Output{}, fmt.Errorf("%q: unsupported scheme %q (want stdout, udp://HOST:PORT or unix:///PATH)", s, u.Scheme)
}

func (o Output) String() string {
	switch o.Scheme {
	case "stdout":
		return "stdout"
	case "unix":
		return "unix://" + o.Addr
	}
	return o.Scheme + "://" + o.Addr
}

// MaxPayload is the largest datagram the output can carry.
func (o Output) MaxPayload() int {
	switch o.Scheme {
	case "udp":
		return maxUDPPayload
	case "unix":
		return maxUnixPayload
	}
	return 1 << 20
}

// open returns the shipper for the output.
func (o Output) open(stdout io.Writer, opts shipper.Options) (*shipper.Shipper, error) {
	var (
		s   *shipper.Shipper
		err error
	)
	switch o.Scheme {
	case "udp":
		s, err = shipper.Dial("udp", o.Addr, opts)
	case "unix":
		s, err = shipper.Dial("unixgram", o.Addr, opts)
	default:
		s, err = shipper.NewWriter(stdout, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("open output %s: %w", o, err)
	}
	return s, nil
}

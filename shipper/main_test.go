package shipper

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

// TestMain fails the run if the tests leave sockets open.
func TestMain(m *testing.M) {
	// Start the network poller first: its descriptors live for good.
	if c, err := net.ListenPacket("udp", "127.0.0.1:0"); err == nil {
		c.Close()
	}
	before := openFDs()
	code := m.Run()
	if code == 0 && before >= 0 {
		// Count before a GC could run the finalizers that would close
		// what a test forgot.
		if after := openFDs(); after > before {
			fmt.Fprintf(os.Stderr, "tests leaked %d sockets\n", after-before)
			code = 1
		}
	}
	os.Exit(code)
}

// openFDs counts the process's open sockets, or returns -1 where it
// cannot. Other files are left out: the testing package itself keeps
// profile files open past the tests.
func openFDs() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

package shipper

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestUDPReturnedCounted: a UDP receiver that goes away on loopback, where
// every datagram sent to its port comes back as an ICMP port unreachable.
// Each datagram the kernel took either reached the receiver or is counted
// as returned and failed, with its lines: nothing is lost uncounted.
func TestUDPReturnedCounted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("returned datagrams are read from the socket error queue (IP_RECVERR), on Linux")
	}
	for _, addr := range []string{"127.0.0.1", "[::1]"} {
		t.Run(addr, func(t *testing.T) {
			if l, err := net.ListenPacket("udp", addr+":0"); err != nil {
				t.Skipf("no %s: %v", addr, err)
			} else {
				l.Close()
			}
			r := newReceiver(t, "udp", addr+":0")
			sh, err := Dial("udp", r.conn.LocalAddr().String(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			in, _ := NewInterner(InternerOptions{})
			m := mustRegister(t, in, MetricSpec{Name: "test.counter", TagKeys: []string{"series"}})
			agg := NewAggregator(in, AggregatorOptions{})
			// Tag values long enough that datagrams are quoted only in part.
			keys := make([]Key, 200)
			for i := range keys {
				keys[i] = m.Key([]byte(strconv.Itoa(i) + strings.Repeat("x", 20)))
			}
			flush := func() {
				for _, k := range keys {
					agg.Add(k, 1)
				}
				sh.Flush(agg)
				sh.Send(context.Background())
			}
			flush()
			waitFor(t, 2*time.Second, "every line received", func() bool { return r.lines.Load() == int64(len(keys)) })
			r.close() // its socket buffer is empty: whatever is sent now bounces

			for start := time.Now(); sh.Breaker() == BreakerClosed; time.Sleep(5 * time.Millisecond) {
				if time.Since(start) > 5*time.Second {
					t.Fatal("breaker still closed 5s after the receiver went away")
				}
				flush()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := sh.Close(ctx); err != nil {
				t.Fatal(err)
			}
			st := sh.Stats()
			checkAccounting(t, st)
			c := st.Counts
			t.Logf("sent %d datagrams (%d lines), %d returned (%d lines), %d failed (%d lines); received %d datagrams, %d lines; error %v",
				c[StatDatagramsSent], c[StatLinesSent], c[StatDatagramsReturned], c[StatLinesReturned],
				c[StatDatagramsFailed], c[StatLinesFailed], r.datagrams.Load(), r.lines.Load(), sh.Err())
			if c[StatDatagramsReturned] == 0 {
				t.Error("no datagram counted as returned")
			}
			if got, want := uint64(r.datagrams.Load()), c[StatDatagramsSent]-c[StatDatagramsReturned]; got != want {
				t.Errorf("receiver got %d datagrams; sent less returned is %d", got, want)
			}
			if got, want := uint64(r.lines.Load()), c[StatLinesSent]-c[StatLinesReturned]; got != want {
				t.Errorf("receiver got %d lines; sent less returned is %d", got, want)
			}
		})
	}
}

func TestSentLogMatch(t *testing.T) {
	l := newSentLog()
	payload := func(fill string, lines, size int) []byte {
		var b []byte
		for i := range lines {
			line := fill + strconv.Itoa(i)
			line += strings.Repeat("y", max(size/lines-len(line)-1, 0)) + "\n"
			b = append(b, line...)
		}
		return b
	}
	short := payload("a", 3, 100)
	long1 := payload("b", 10, 1400)
	long2 := payload("b", 12, 1400) // the same first 520 bytes? no: other line lengths
	long3 := payload("c", 10, 1400)
	for _, p := range [][]byte{short, long1, short, long2, long3} {
		l.add(p, bytes.Count(p, []byte{'\n'}))
	}
	for _, tc := range []struct {
		name        string
		quote       []byte
		size, lines int
		ok          bool
	}{
		{"whole short", short, len(short), 3, true},
		{"long quoted in part", long2[:520], len(long2), 12, true},
		{"first 64 bytes", long3[:100], len(long3), 10, true},
		// Everything up to long3 is forgotten: the short one again is
		// not there.
		{"forgotten", short, len(short), 3, false},
	} {
		size, lines, ok := l.match(tc.quote)
		if size != tc.size || lines != tc.lines || ok != tc.ok {
			t.Errorf("%s: match = %d bytes, %d lines, %v; want %d, %d, %v", tc.name, size, lines, ok, tc.size, tc.lines, tc.ok)
		}
	}
	// The log keeps the newest sentLogSize datagrams.
	for i := range sentLogSize + 10 {
		p := []byte("n" + strconv.Itoa(i) + "\n")
		l.add(p, 1)
	}
	if _, _, ok := l.match([]byte("n5\n")); ok {
		t.Error("matched a datagram the log should have forgotten")
	}
	if _, lines, ok := l.match([]byte("n20\n")); !ok || lines != 1 {
		t.Errorf("match of a datagram in the log: %d lines, %v", lines, ok)
	}
	if l.n != sentLogSize+10-21 {
		t.Errorf("%d entries left, want %d", l.n, sentLogSize+10-21)
	}
}

// TestUDPSendErrorNamesReceiver: a datagram the kernel refuses at once
// (here too large for UDP) fails with an error that names the receiver,
// as the breaker and --health then report it.
func TestUDPSendErrorNamesReceiver(t *testing.T) {
	r := newReceiver(t, "udp", "127.0.0.1:0")
	addr := r.conn.LocalAddr().String()
	tr, err := dialUDP("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	_, err = tr.writeBatch([][]byte{make([]byte, 70000)})
	if err == nil || !strings.HasPrefix(err.Error(), "send to "+addr+": ") {
		t.Fatalf("send of 70000 bytes: %v, want an error that names %s", err, addr)
	}
}

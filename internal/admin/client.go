package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotRunning reports that no daemon answered on the socket.
var ErrNotRunning = errors.New("bpfstatd is not running")

// Query asks the daemon listening at path for a snapshot.
func Query(path string) (Snapshot, error) {
	var s Snapshot
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
			return s, fmt.Errorf("query %s: %w (no daemon listens there)", path, ErrNotRunning)
		}
		return s, fmt.Errorf("query %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewDecoder(c).Decode(&s); err != nil {
		return s, fmt.Errorf("query %s: read snapshot: %w (only root may query)", path, err)
	}
	return s, nil
}

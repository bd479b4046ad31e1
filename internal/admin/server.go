package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Server answers status queries on a Unix socket. Only root and the
// daemon's own user may connect: the socket has mode 0600 in a directory of
// mode 0700, and each peer's credentials are checked too.
type Server struct {
	ln       *net.UnixListener
	path     string
	snapshot atomic.Pointer[func() Snapshot]
	wg       sync.WaitGroup
}

// Listen creates the socket at path, creating its directory if needed. A
// stale socket left by a daemon that died is replaced; a live one is an
// error. snapshot is called from the server's goroutines, once per query;
// it may be nil until [Server.SetSnapshot] is called, which lets a daemon
// claim its socket before it loads anything.
func Listen(path string, snapshot func() Snapshot) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create admin socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s is in use: is another bpfstatd running? (use --admin-socket)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale admin socket: %w", err)
		}
	}
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict admin socket: %w", err)
	}
	s := &Server{ln: ln, path: path}
	s.SetSnapshot(snapshot)
	return s, nil
}

// SetSnapshot sets the function that answers queries. It may be called
// from any goroutine.
func (s *Server) SetSnapshot(snapshot func() Snapshot) {
	if snapshot != nil {
		s.snapshot.Store(&snapshot)
	}
}

// Serve answers queries until ctx is done, then closes the socket and
// removes it.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	defer s.wg.Wait()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept admin connection: %w", err)
		}
		s.wg.Go(func() { s.answer(c) })
	}
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops listening and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) answer(c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	snap := s.snapshot.Load()
	if !allowed(c) || snap == nil {
		return
	}
	json.NewEncoder(c).Encode((*snap)())
}

// allowed accepts root and the daemon's own user.
func allowed(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Geteuid()
}

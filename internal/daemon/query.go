package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bpfstatd/bpfstatd/internal/admin"
)

// errUnhealthy makes --health exit 1 after printing why.
var errUnhealthy = errors.New("unhealthy")

// runQuery asks the daemon at cfg.AdminSocket and prints the answer: once,
// or every second with --watch until ctx is done.
func runQuery(ctx context.Context, cfg Config, stdout io.Writer) error {
	for {
		s, err := admin.Query(cfg.AdminSocket)
		if err != nil {
			return err
		}
		if err := printQuery(stdout, cfg.Query, s); err != nil {
			return err
		}
		if cfg.Query.Health && !s.Health.Healthy {
			return errUnhealthy
		}
		if !cfg.Query.Watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		if !cfg.Query.JSON {
			fmt.Fprint(stdout, "\n")
		}
	}
}

func printQuery(w io.Writer, q Query, s admin.Snapshot) error {
	if q.JSON {
		var v any = s
		switch {
		case q.Drops && !q.Status && !q.Health:
			v = s.Drops
		case q.Health && !q.Status && !q.Drops:
			v = s.Health
		}
		return json.NewEncoder(w).Encode(v)
	}
	if q.Status {
		if err := admin.WriteStatus(w, s); err != nil {
			return err
		}
	}
	if q.Drops {
		if err := admin.WriteDrops(w, s); err != nil {
			return err
		}
	}
	if q.Health && !q.Status {
		return admin.WriteHealth(w, s)
	}
	return nil
}

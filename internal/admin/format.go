package admin

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteStatus writes the snapshot's overview for people.
func WriteStatus(w io.Writer, s Snapshot) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "bpfstatd\tpid %d, up %s, shipping to %s\n", s.PID, time.Duration(s.Uptime).Round(time.Second), s.Output)
	fmt.Fprintf(tw, "health\t%s\n", healthLine(s.Health))
	for _, c := range s.Collectors {
		progs := "programs"
		if c.Programs == 1 {
			progs = "program"
		}
		fmt.Fprintf(tw, "collector %s\t%d %s attached, %.1f events/s, %d events\n", c.Name, c.Programs, progs, c.EventsPerSec, c.Events)
	}
	fmt.Fprintf(tw, "throttle\tlevel %d, kernel keeps 1 event in %d\n", s.Throttle.Level, max(s.Throttle.SampleRate, 1))
	fmt.Fprintf(tw, "breaker\t%s\n", s.Breaker)
	fmt.Fprintf(tw, "latency\tp50 %s, p99 %s, max %s\n", time.Duration(s.Latency.P50), time.Duration(s.Latency.P99), time.Duration(s.Latency.Max))
	fmt.Fprintf(tw, "memory\tRSS %.1f MiB, Go heap %.1f MiB, %d goroutines\n", float64(s.RSSBytes)/(1<<20), float64(s.HeapBytes)/(1<<20), s.Goroutines)
	return tw.Flush()
}

// WriteDrops writes the drop ledger as a table, one stage and reason a line.
func WriteDrops(w io.Writer, s Snapshot) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STAGE\tREASON\tSOURCE\tCOUNT\t")
	for _, d := range s.Drops {
		src := d.Source
		if src == "" {
			src = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t\n", d.Stage, d.Reason, src, d.Count)
	}
	return tw.Flush()
}

// WriteHealth writes one line: "healthy", or "unhealthy: " and the reasons.
func WriteHealth(w io.Writer, s Snapshot) error {
	_, err := fmt.Fprintln(w, healthLine(s.Health))
	return err
}

func healthLine(h Health) string {
	if h.Healthy {
		return "healthy"
	}
	return "unhealthy: " + strings.Join(h.Reasons, "; ")
}

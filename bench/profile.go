package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// goShape matches the type of a generic instantiation in a symbol.
var goShape = regexp.MustCompile(`go\.shape\.struct \{.*\}`)

// perfProfile samples pid's stacks with perf for d and returns the top
// symbols by self time, or why it could not.
func perfProfile(dir string, pid int, d time.Duration) string {
	if _, err := exec.LookPath("perf"); err != nil {
		return "no profile: perf is not installed"
	}
	data := filepath.Join(dir, "perf.data")
	secs := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	ctx, cancel := context.WithTimeout(context.Background(), d+20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "perf", "record", "-q", "-F", "999", "-p", strconv.Itoa(pid), "-o", data, "--", "sleep", secs).CombinedOutput(); err != nil {
		return fmt.Sprintf("no profile: perf record: %v: %s", err, tail(string(out), 300))
	}
	out, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol", "-g", "none", "--percent-limit", "1.5").Output()
	if err != nil {
		return fmt.Sprintf("no profile: perf report: %v", err)
	}
	var keep []string
	for line := range strings.Lines(string(out)) {
		line = goShape.ReplaceAllString(strings.TrimRight(line, "\n -"), "go.shape…")
		if strings.TrimSpace(line) == "" || (strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "# Samples")) {
			continue
		}
		keep = append(keep, line)
		if len(keep) >= 25 {
			break
		}
	}
	return strings.Join(keep, "\n")
}

package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// soakWarm is where the soak's memory baseline is taken: start-up
// allocations and the first GC cycles are over by then.
const soakWarm = 2 * time.Minute

// loadSamples are the samples taken while the generator ran.
func (r *soakRun) loadSamples() []soakSample {
	var out []soakSample
	for _, s := range r.Samples {
		if s.Load {
			out = append(out, s)
		}
	}
	return out
}

// warmIndex is the first load sample at the warm mark, or at two thirds
// of runs shorter than 3 minutes.
func warmIndex(ss []soakSample, dur time.Duration) int {
	mark := min(soakWarm, dur*2/3)
	for i, s := range ss {
		if s.At >= mark {
			return i
		}
	}
	return max(0, len(ss)-1)
}

// rssSlope is the least-squares slope of RSS in MB per 10 minutes.
func rssSlope(ss []soakSample) float64 {
	if len(ss) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range ss {
		x, y := s.At.Minutes()/10, mb(s.RSS)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	n := float64(len(ss))
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// judge returns the soak's failed checks: RSS up more than 10% from the
// warm mark to the end of the load, more goroutines at the end than ever
// before the warm mark, a ledger identity broken in any sample, and a
// receiver total that the counted drops do not reconcile with the events.
func (r *soakRun) judge() []string {
	var failed []string
	ss := r.loadSamples()
	if len(ss) == 0 {
		return []string{"no sample taken under load"}
	}
	w, end := warmIndex(ss, r.cfg.dur), ss[len(ss)-1]
	if base := ss[w].RSS; float64(end.RSS) > 1.10*float64(base) {
		failed = append(failed, fmt.Sprintf("RSS grew %.1f%% from %.1f MB at %s to %.1f MB at the end (at most 10%%)",
			100*(float64(end.RSS)/float64(base)-1), mb(base), ss[w].At.Round(time.Second), mb(end.RSS)))
	}
	early := 0
	for _, s := range ss[:w+1] {
		early = max(early, s.Goroutines)
	}
	if end.Goroutines > early {
		failed = append(failed, fmt.Sprintf("goroutines grew: %d at the end, at most %d up to %s", end.Goroutines, early, ss[w].At.Round(time.Second)))
	}
	for prog, n := range ledgerBreaks(r.Samples) {
		failed = append(failed, fmt.Sprintf("ledger of %s: seen − (emitted + ring_full + sampled_out + pending) beyond the read skew in %d of %d samples", prog, n, len(r.Samples)))
	}
	if miss := math.Abs(float64(r.Events) - r.Received); miss > float64(r.drops()) {
		failed = append(failed, fmt.Sprintf("receiver got %.0f of %d "+soakComm+" events: %.0f apart, %d counted drops", r.Received, r.Events, miss, r.drops()))
	}
	return failed
}

// skewWindow bounds how far apart in time the daemon's lookups of one
// ledger's slots can be: it reads seen, then each outcome, per-CPU sums of
// a running program, so an event between the lookups counts in one and not
// the others, and a reader preempted between lookups widens the gap. A
// ledger that leaks (a path counting seen and no outcome) drifts without
// bound and soon passes it.
const skewWindow = 10 * time.Millisecond

// skewAllowed is the most a sample of program prog may miss the identity
// by: its events in skewWindow at the rate since the previous sample, and
// at least 64.
func skewAllowed(prev, cur *soakSample, prog string) int64 {
	if prev == nil || cur.At <= prev.At {
		return 64
	}
	seen := func(s *soakSample) uint64 {
		for _, l := range s.Ledgers {
			if l.Program == prog {
				return l.Seen
			}
		}
		return 0
	}
	rate := float64(seen(cur)-seen(prev)) / (cur.At - prev.At).Seconds()
	return max(64, int64(rate*skewWindow.Seconds()))
}

// ledgerBreaks counts, per program, the samples whose ledger misses the
// identity by more than the read skew allows.
func ledgerBreaks(ss []soakSample) map[string]int {
	out := map[string]int{}
	for i := range ss {
		var prev *soakSample
		if i > 0 {
			prev = &ss[i-1]
		}
		for _, l := range ss[i].Ledgers {
			if u := l.Unaccounted(); u < -skewAllowed(prev, &ss[i], l.Program) || u > skewAllowed(prev, &ss[i], l.Program) {
				out[l.Program]++
			}
		}
	}
	return out
}

// drops are the counted losses that may excuse missing events.
func (r *soakRun) drops() uint64 { return r.RingFull + r.Sampled + r.NotRun + r.UserDrops }

func (r *soakRun) markdown(failed []string) string {
	var b strings.Builder
	ss := r.loadSamples()
	fmt.Fprintf(&b, "# Soak: %s at %s events/s\n\n", r.cfg.dur, Num(r.cfg.rate))
	fmt.Fprintf(&b, "`bpfstatd --syscalls-by-process --dialect statsd_exporter %s` shipping to statsd_exporter on loopback; "+
		"a thread named `%s` calling getppid and getpid in turn; a sample every %s (`soak.csv`, `soak.png`).\n\n",
		strings.Join(r.cfg.daemonArgs, " "), soakComm, r.cfg.every)
	if len(failed) == 0 {
		b.WriteString("**Passed.**\n\n")
	} else {
		b.WriteString("**Failed:**\n\n")
		for _, f := range failed {
			fmt.Fprintf(&b, "- %s\n", f)
		}
		b.WriteString("\n")
	}
	if len(ss) == 0 {
		return b.String()
	}
	w := warmIndex(ss, r.cfg.dur)
	t := &Table{Head: []string{"measure", "value"}}
	var rssMax uint64
	gMin, gMax := math.MaxInt, 0
	for _, s := range ss {
		rssMax = max(rssMax, s.RSS)
		gMin, gMax = min(gMin, s.Goroutines), max(gMax, s.Goroutines)
	}
	end := ss[len(ss)-1]
	t.Add("RSS start, at "+ss[w].At.Round(time.Second).String()+", end, max (MB)",
		fmt.Sprintf("%.1f, %.1f, %.1f, %.1f", mb(ss[0].RSS), mb(ss[w].RSS), mb(end.RSS), mb(rssMax)))
	t.Add("RSS slope from "+ss[w].At.Round(time.Second).String()+" (MB per 10 min)", fmt.Sprintf("%+.2f", rssSlope(ss[w:])))
	t.Add("goroutines min, max, end", fmt.Sprintf("%d, %d, %d", gMin, gMax, end.Goroutines))
	var worst int64
	exact, beyond := 0, 0
	for _, s := range r.Samples {
		u := s.unaccounted()
		if u == 0 {
			exact++
		}
		if math.Abs(float64(u)) > math.Abs(float64(worst)) {
			worst = u
		}
	}
	for _, n := range ledgerBreaks(r.Samples) {
		beyond += n
	}
	t.Add("ledger identity seen = emitted + ring_full + sampled_out + pending (every program)",
		fmt.Sprintf("exact in %d of %d samples; largest miss %d; beyond the read skew in %d", exact, len(r.Samples), worst, beyond))
	t.Add(soakComm+" syscalls: kernel count, generator's own count", fmt.Sprintf("%d, %d", r.Events, r.Generated.Syscalls()))
	t.Add("received at statsd_exporter", fmt.Sprintf("%.0f (%+.0f)", r.Received, r.Received-float64(r.Events)))
	t.Add("counted drops: "+byProcessProg+" ring_full, sampled_out; syscalls not run; user space",
		fmt.Sprintf("%d, %d; %d; %d", r.RingFull, r.Sampled, r.NotRun, r.UserDrops))
	b.WriteString(t.Markdown())
	fmt.Fprintf(&b, "\nThe daemon reads the ledger while the programs run, seen before the outcomes: a sample may miss the identity "+
		"by the events between its lookups, up to those of %s at the program's rate (at least 64); a leaking ledger drifts past that.\n", skewWindow)
	b.WriteString("\nThe kernel count is a perf counter on raw_syscalls:sys_enter filtered on the thread name: " +
		"the Go runtime's own syscalls on the generator's thread included, which the generator's count misses.\n")
	return b.String()
}

// plotSoak draws RSS, goroutines and the ledger's unaccounted events
// against time, one panel each, into file (PNG).
func plotSoak(ss []soakSample, file string) error {
	panels := []struct {
		title, ylabel string
		y             func(*soakSample) float64
	}{
		{"daemon RSS", "MB", func(s *soakSample) float64 { return mb(s.RSS) }},
		{"goroutines", "count", func(s *soakSample) float64 { return float64(s.Goroutines) }},
		{"kernel ledger: seen − (emitted + ring_full + sampled_out + pending), every program", "events", func(s *soakSample) float64 { return float64(s.unaccounted()) }},
	}
	var rows [][]*plot.Plot
	for _, p := range panels {
		xys := make(plotter.XYs, len(ss))
		ymax := 0.0
		for i := range ss {
			xys[i] = plotter.XY{X: ss[i].At.Minutes(), Y: p.y(&ss[i])}
			ymax = math.Max(ymax, xys[i].Y)
		}
		pl := plot.New()
		pl.Title.Text = p.title
		pl.X.Label.Text = "minutes"
		pl.Y.Label.Text = p.ylabel
		pl.Add(plotter.NewGrid())
		line, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		line.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
		line.Width = vg.Points(1.5)
		pl.Add(line)
		if ymax > 0 {
			pl.Y.Min = 0
			pl.Y.Max = ymax * 1.15
		}
		rows = append(rows, []*plot.Plot{pl})
	}
	img := vgimg.New(7*vg.Inch, 8*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(rows), Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadY: vg.Points(12), PadLeft: vg.Points(4), PadRight: vg.Points(8)}
	cs := plot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(cs[i][0])
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A Sample is one line of `go test -bench` output: a benchmark's name
// (without the "Benchmark" prefix and the -GOMAXPROCS suffix), the package
// it ran in, and its values by unit.
type Sample struct {
	Pkg    string
	Name   string
	Iters  int64
	Values map[string]float64
}

// procsSuffix is the -N that go test appends to a benchmark's name.
var procsSuffix = regexp.MustCompile(`-\d+$`)

// ParseBench reads the standard benchmark format (golang.org/x/perf's
// benchfmt): "pkg:" configuration lines and "BenchmarkName-N iters value
// unit ..." result lines. Anything else (logs, PASS, ok) is skipped.
func ParseBench(r io.Reader) ([]Sample, error) {
	var out []Sample
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "pkg:"); ok {
			pkg = strings.TrimSpace(rest)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		iters, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue // e.g. a benchmark's log line starting with its name
		}
		s := Sample{Pkg: pkg, Iters: iters, Values: map[string]float64{}}
		s.Name = procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		ok := true
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				ok = false
				break
			}
			s.Values[f[i+1]] = v
		}
		if ok {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// A Stat is the median of one benchmark's runs, unit by unit.
type Stat struct {
	Pkg, Name string
	Runs      int
	Median    map[string]float64
	Min, Max  map[string]float64
	Units     []string // in the order first seen
}

// Summarize groups samples by package and name, in the order first seen,
// and takes the median of every unit.
func Summarize(samples []Sample) []*Stat {
	var order []*Stat
	byKey := map[string]*Stat{}
	vals := map[*Stat]map[string][]float64{}
	for _, s := range samples {
		k := s.Pkg + "\x00" + s.Name
		st := byKey[k]
		if st == nil {
			st = &Stat{Pkg: s.Pkg, Name: s.Name, Median: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{}}
			byKey[k] = st
			order = append(order, st)
			vals[st] = map[string][]float64{}
		}
		st.Runs++
		units := make([]string, 0, len(s.Values))
		for u := range s.Values {
			units = append(units, u)
		}
		slices.SortFunc(units, unitOrder)
		for _, u := range units {
			if _, seen := vals[st][u]; !seen {
				st.Units = append(st.Units, u)
			}
			vals[st][u] = append(vals[st][u], s.Values[u])
		}
	}
	for st, m := range vals {
		for u, v := range m {
			st.Median[u] = median(v)
			st.Min[u] = slices.Min(v)
			st.Max[u] = slices.Max(v)
		}
		slices.SortStableFunc(st.Units, unitOrder)
	}
	return order
}

// unitOrder puts ns/op first and B/op, allocs/op last, others by name.
func unitOrder(a, b string) int {
	rank := func(u string) int {
		switch u {
		case "ns/op":
			return 0
		case "B/op":
			return 2
		case "allocs/op":
			return 3
		}
		return 1
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra - rb
	}
	return strings.Compare(a, b)
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// Find returns the stat of the benchmark named name (package suffix pkg),
// or nil.
func Find(stats []*Stat, pkg, name string) *Stat {
	for _, s := range stats {
		if strings.HasSuffix(s.Pkg, pkg) && s.Name == name {
			return s
		}
	}
	return nil
}

// A Table is rendered as a GitHub Markdown table.
type Table struct {
	Head []string
	Rows [][]string
}

func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// Markdown renders t; cells have '|' escaped.
func (t *Table) Markdown() string {
	var b strings.Builder
	row := func(cells []string) {
		b.WriteString("|")
		for i := range t.Head {
			c := ""
			if i < len(cells) {
				c = strings.ReplaceAll(cells[i], "|", `\|`)
			}
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n")
	}
	row(t.Head)
	b.WriteString("|")
	for range t.Head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		row(r)
	}
	return b.String()
}

// Num formats a figure with three significant digits and a k/M suffix
// for large ones; NaN (missing) is "–".
func Num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e9:
		return sig(v/1e9) + " G"
	case math.Abs(v) >= 1e6:
		return sig(v/1e6) + " M"
	case math.Abs(v) >= 1e4:
		return sig(v/1e3) + " k"
	}
	return sig(v)
}

func sig(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// get returns the median of unit u, or NaN.
func (s *Stat) get(u string) float64 {
	if s == nil {
		return math.NaN()
	}
	if v, ok := s.Median[u]; ok {
		return v
	}
	return math.NaN()
}

// spread is the range of unit u over the runs, as ±% of the median.
func (s *Stat) spread(u string) string {
	m := s.get(u)
	if math.IsNaN(m) || m == 0 || s.Runs < 2 {
		return ""
	}
	d := math.Max(s.Max[u]-m, m-s.Min[u]) / m * 100
	return fmt.Sprintf(" ±%.0f%%", d)
}

// AllTable lists every benchmark of the packages given, with the median of
// each unit it reported.
func AllTable(stats []*Stat) *Table {
	t := &Table{Head: []string{"package", "benchmark", "runs", "ns/op", "allocs/op", "B/op", "other metrics (medians)"}}
	for _, s := range stats {
		var other []string
		for _, u := range s.Units {
			switch u {
			case "ns/op", "allocs/op", "B/op":
				continue
			}
			other = append(other, Num(s.Median[u])+" "+u)
		}
		pkg := s.Pkg[strings.LastIndex(s.Pkg, "/")+1:]
		t.Add(pkg, s.Name, strconv.Itoa(s.Runs), Num(s.get("ns/op"))+s.spread("ns/op"),
			Num(s.get("allocs/op")), Num(s.get("B/op")), strings.Join(other, ", "))
	}
	return t
}

// A Peer compares a bpfstatd stage with the alternative measured in the
// same run: Ratio is peer/ours for a lower-is-better unit and ours/peer
// for a higher-is-better one, so above 1 means bpfstatd is ahead.
type Peer struct {
	Stage      string
	Pkg        string
	Ours, Them string // benchmark names
	Unit       string // the unit compared
	Higher     bool   // higher is better (a rate)
	Note       string
}

// Peers are the comparisons the pipeline table makes when both sides ran.
var Peers = []Peer{
	{"hand-off, 1 item per push", "ringbuf", "Handoff/ring/single", "Handoff/chan/single", "ns/op", false, "Ring vs buffered channel, cross-core"},
	{"hand-off, 1 item per push, busy consumer", "ringbuf", "Handoff/ring/single-busy", "Handoff/chan/single", "ns/op", false, "Ring vs buffered channel"},
	{"hand-off, batches of 64", "ringbuf", "Handoff/ring/batch64", "Handoff/chan/batch64", "ns/op", false, "per batch of 64 items"},
	{"many producers → one consumer", "ringbuf", "MPSC/lanes/batch64", "MPSC/chan/single", "ns/op", false, "Lanes (batch 64) vs one shared channel"},
	{"many producers, locked ring", "ringbuf", "MPSC/mutex/batch64", "MPSC/chan/single", "ns/op", false, "mutex-shared Ring vs channel"},
	{"lanes, 2 producers against 1", "ringbuf", "MPSC/lanes/batch64", "MPSC/lanes/batch64" + oneCPU, "ns/op", false, "Lanes (batch 64) with -cpu 2 vs -cpu 1, per item: the issue's target is ≥ 1.6×"},
	{"drain a kernel-ring backlog", "ringbuf", "Drain/backlog", "Drain/backlog-readinto", "records/s", true, "Drainer+Ring vs cilium Reader.ReadInto"},
	{"drain a kernel-ring backlog", "bench", "DrainPlain/bpfstatd", "DrainPlain/cilium-read", "records/s", true, "Drainer vs cilium Reader.Read (allocating), bench/"},
	{"drain a kernel-ring backlog", "bench", "DrainPlain/cilium-readinto", "DrainPlain/cilium-read", "records/s", true, "cilium ReadInto vs Read, bench/"},
	{"ship 10 k series × 100 updates", "e2e", "Ship/bpfstatd", "Ship/datadog-go", "ns/op", false, "bpfstatd shipper vs datadog-go client-side aggregation, all packets counted at the receiver"},
}

// PeerTable renders the comparisons for which both benchmarks ran.
func PeerTable(stats []*Stat) *Table {
	t := &Table{Head: []string{"stage", "bpfstatd", "ns/op", "allocs/op", "items/s", "peer", "peer ns/op", "peer allocs/op", "peer items/s", "compared", "bpfstatd ahead by"}}
	for _, p := range Peers {
		ours, them := Find(stats, p.Pkg, p.Ours), Find(stats, p.Pkg, p.Them)
		if ours == nil || them == nil {
			continue
		}
		a, b := ours.get(p.Unit), them.get(p.Unit)
		ratio := b / a
		if p.Higher {
			ratio = a / b
		}
		t.Add(p.Stage, p.Ours, Num(ours.get("ns/op")), Num(ours.get("allocs/op")), Num(rate(ours)),
			p.Them, Num(them.get("ns/op")), Num(them.get("allocs/op")), Num(rate(them)),
			p.Unit+" ("+p.Note+")", fmt.Sprintf("%.2f×", ratio))
	}
	return t
}

// rate is the benchmark's own throughput metric, if it reported one.
func rate(s *Stat) float64 {
	for _, u := range []string{"items/s", "records/s", "updates/s", "lines/s", "events/s"} {
		if v := s.get(u); !math.IsNaN(v) {
			return v
		}
	}
	return math.NaN()
}

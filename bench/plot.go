package main

import (
	"fmt"
	"image/color"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// A series to plot against the generated syscall rate.
type series struct {
	file, title, ylabel string
	y                   func(*point) float64
	target              float64 // a horizontal target line; 0: none
	targetLabel         string
}

// plotE2E draws y against the achieved rate for each series, with the
// target as a dashed line, into file (PNG).
func plotE2E(pts []*point, s series) error {
	var xys plotter.XYs
	for _, p := range pts {
		if p.Err != "" || p.GenRate() <= 0 {
			continue
		}
		xys = append(xys, plotter.XY{X: p.GenRate(), Y: s.y(p)})
	}
	sort.Slice(xys, func(i, j int) bool { return xys[i].X < xys[j].X })
	if len(xys) == 0 {
		return fmt.Errorf("no point measured")
	}
	pl := plot.New()
	pl.Title.Text = s.title
	pl.X.Label.Text = "generated syscalls/s, comm bsload-PID (host load on top)"
	pl.Y.Label.Text = s.ylabel
	pl.X.Scale = plot.LogScale{}
	pl.X.Tick.Marker = plot.LogTicks{Prec: -1}
	pl.Add(plotter.NewGrid())
	if len(xys) > 0 {
		line, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		line.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
		line.Width = vg.Points(1.5)
		pts.Color = line.Color
		pts.Radius = vg.Points(3)
		pl.Add(line, pts)
		pl.Legend.Add("bpfstatd", line, pts)
		ymax := 0.0
		for _, v := range xys {
			ymax = math.Max(ymax, v.Y)
		}
		pl.X.Min = math.Pow(10, math.Floor(math.Log10(xys[0].X)))
		pl.X.Max = math.Pow(10, math.Ceil(math.Log10(xys[len(xys)-1].X)))
		pl.Y.Min = 0
		pl.Y.Max = math.Max(ymax, s.target) * 1.15
		if s.target > 0 {
			tl, err := plotter.NewLine(plotter.XYs{{X: xys[0].X, Y: s.target}, {X: xys[len(xys)-1].X, Y: s.target}})
			if err != nil {
				return err
			}
			tl.Color = color.RGBA{R: 214, G: 39, B: 40, A: 255}
			tl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			pl.Add(tl)
			pl.Legend.Add(s.targetLabel, tl)
		}
		pl.Legend.Top = true
		pl.Legend.Left = true
	}
	return pl.Save(6*vg.Inch, 3.6*vg.Inch, s.file)
}

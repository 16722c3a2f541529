package main

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

const (
	plotWidth  = 16 * vg.Centimeter
	plotHeight = 10 * vg.Centimeter
	mib        = 1 << 20
)

// plotRSS draws the room's RSS against connections held, one line per
// result (engine), and returns the file written ("" when no result has a
// series).
func plotRSS(dir, name, title string, results []*Result) (string, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "connections held"
	p.Y.Label.Text = "room RSS (MiB)"
	var args []any
	for _, r := range results {
		if len(r.Series) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(r.Series))
		for i, pt := range r.Series {
			xys[i].X, xys[i].Y = pt.Conns, float64(pt.RSSBytes)/mib
		}
		args = append(args, seriesName(r), xys)
	}
	if len(args) == 0 {
		return "", nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return "", fmt.Errorf("plot: %w", err)
	}
	return savePlot(p, dir, name)
}

// plotLatency draws end-to-end latency percentiles against the offered
// rate of each unicast step, per engine.
func plotLatency(dir, name, title string, results []*Result) (string, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "offered rate (pushes/s)"
	p.Y.Label.Text = "end-to-end latency (ms)"
	var args []any
	for _, r := range results {
		if len(r.Steps) == 0 {
			continue
		}
		for _, q := range []struct {
			name string
			get  func(LatencyMS) float64
		}{
			{"p50", func(l LatencyMS) float64 { return l.P50 }},
			{"p99", func(l LatencyMS) float64 { return l.P99 }},
			{"p99.9", func(l LatencyMS) float64 { return l.P999 }},
		} {
			xys := make(plotter.XYs, len(r.Steps))
			for i, s := range r.Steps {
				xys[i].X, xys[i].Y = s.Offered, q.get(s.LatencyMS)
			}
			args = append(args, seriesName(r)+" "+q.name, xys)
		}
	}
	if len(args) == 0 {
		return "", nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return "", fmt.Errorf("plot: %w", err)
	}
	return savePlot(p, dir, name)
}

func seriesName(r *Result) string {
	parts := []string{r.Engine}
	for _, p := range []string{r.Mode, r.Transport} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

// plotP99 draws the end-to-end p99 against the offered rate, one line per
// transport and engine, on log-log axes (the ladder doubles the rate),
// with the -p99-limit as a dashed line.
func plotP99(dir, name, title string, limitMS float64, results []*Result) (string, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "offered rate (pushes/s)"
	p.Y.Label.Text = "end-to-end p99 (ms)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	var args []any
	lo, hi := math.Inf(1), 0.0
	for _, r := range results {
		var xys plotter.XYs
		for _, s := range r.Steps {
			if s.Offered > 0 && s.LatencyMS.P99 > 0 {
				xys = append(xys, plotter.XY{X: s.Offered, Y: s.LatencyMS.P99})
				lo, hi = math.Min(lo, s.Offered), math.Max(hi, s.Offered)
			}
		}
		if len(xys) > 0 {
			args = append(args, seriesName(r), xys)
		}
	}
	if len(args) == 0 {
		return "", nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return "", fmt.Errorf("plot: %w", err)
	}
	limit, err := plotter.NewLine(plotter.XYs{{X: lo, Y: limitMS}, {X: hi, Y: limitMS}})
	if err != nil {
		return "", fmt.Errorf("plot: %w", err)
	}
	limit.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(limit)
	p.Legend.Add(fmt.Sprintf("p99 limit %.0f ms", limitMS), limit)
	p.Legend.Top, p.Legend.Left = true, true
	// Both axes span at least a factor of four around the data and the
	// limit, so a one-step ladder still shows where it stands.
	p.X.Min, p.X.Max = math.Min(p.X.Min, lo/2), math.Max(p.X.Max, hi*2)
	p.Y.Min, p.Y.Max = math.Min(p.Y.Min, limitMS/2), math.Max(p.Y.Max, limitMS*2)
	return savePlot(p, dir, name)
}

func savePlot(p *plot.Plot, dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	if err := p.Save(plotWidth, plotHeight, path); err != nil {
		return "", fmt.Errorf("plot %s: %w", path, err)
	}
	return path, nil
}

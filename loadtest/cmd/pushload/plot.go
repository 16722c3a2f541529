package main

import (
	"fmt"
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
	if r.Mode != "" {
		parts = append(parts, r.Mode)
	}
	return strings.Join(parts, " ")
}

func savePlot(p *plot.Plot, dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	if err := p.Save(plotWidth, plotHeight, path); err != nil {
		return "", fmt.Errorf("plot %s: %w", path, err)
	}
	return path, nil
}

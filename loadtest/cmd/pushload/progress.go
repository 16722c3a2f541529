package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Progress bars redraw at most this often; a bench on a shared box should
// not spend its CPU on a terminal.
const (
	barThrottle = 200 * time.Millisecond
	barWidth    = 30
	phaseTick   = 250 * time.Millisecond
)

// progress draws bars on stderr (stdout carries nothing but results).
type progress struct {
	ctx     context.Context // cancelled on SIGINT/SIGTERM: phases end early
	w       io.Writer
	visible bool
}

func newProgress(ctx context.Context, visible bool) *progress {
	return &progress{ctx: ctx, w: os.Stderr, visible: visible}
}

// count is a bar for a phase measured in items of unit (conn, proc).
func (p *progress) count(total int, unit, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(int64(total),
		progressbar.OptionSetWriter(p.w), progressbar.OptionSetVisibility(p.visible),
		progressbar.OptionSetDescription(desc), progressbar.OptionSetWidth(barWidth),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString(unit),
		progressbar.OptionThrottle(barThrottle), progressbar.OptionSetElapsedTime(true))
}

// timed is a bar for a phase of known length, in seconds.
func (p *progress) timed(d time.Duration, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(int64(d/time.Millisecond),
		progressbar.OptionSetWriter(p.w), progressbar.OptionSetVisibility(p.visible),
		progressbar.OptionSetDescription(desc), progressbar.OptionSetWidth(barWidth),
		progressbar.OptionThrottle(barThrottle), progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true))
}

// wait sleeps d behind a bar (quietly when d is a few seconds at most),
// returning early when the run is interrupted.
func (p *progress) wait(d time.Duration, desc string) {
	if d <= 0 {
		return
	}
	if d <= shortPhase {
		p.sleep(d)
		return
	}
	bar := p.timed(d, desc)
	start := time.Now()
	for time.Since(start) < d && p.sleep(min(phaseTick, d-time.Since(start))) {
		_ = bar.Set64(int64(time.Since(start) / time.Millisecond))
	}
	p.done(bar)
}

// sleep waits d; false when the run was interrupted.
func (p *progress) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// sleepUntil is sleep that also ends, returning true, when ch closes.
func (p *progress) sleepUntil(ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ch:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// shortPhase is how long a phase may run without a bar.
const shortPhase = 3 * time.Second

// done completes a bar and ends its line, so what follows starts clean.
func (p *progress) done(bar *progressbar.ProgressBar) {
	_ = bar.Finish()
	if p.visible {
		fmt.Fprintln(p.w)
	}
}

// logf prints a status line between bars.
func (p *progress) logf(format string, args ...any) {
	fmt.Fprintf(p.w, "bench: "+format+"\n", args...)
}

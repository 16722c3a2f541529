package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Profiling of the room under load.
const (
	// cpuProfileSeconds is the length of a CPU profile; it must fit in
	// the phase it samples.
	cpuProfileSeconds = 5
	// baselineQuiet lets the forced GC of a baseline sample finish
	// returning memory before RSS is read.
	baselineQuiet = time.Second
)

// roomProbe samples one room of the bench cluster.
func roomProbe(r *roomInfo) *probe {
	return &probe{pid: r.PID, admin: r.Admin, http: &http.Client{Timeout: scrapeTimeout}}
}

// quietSample forces a GC in the room (pprof heap?gc=1), lets it settle
// and samples, so heap figures count live memory, not garbage.
func (b *bench) quietSample(pr *probe) (Sample, []byte, error) {
	prof, err := pr.heapProfile()
	if err != nil {
		return Sample{}, nil, err
	}
	b.p.sleep(baselineQuiet)
	s, err := pr.Sample()
	return s, prof, err
}

// saveProfile writes a pprof profile next to the results.
func (b *bench) saveProfile(r *Result, kind string, prof []byte) {
	if !b.f.profiles || len(prof) == 0 {
		return
	}
	parts := []string{r.Scenario}
	for _, p := range []string{r.Mode, r.Transport} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	name := strings.Join(append(parts, r.Engine, kind, r.Date.Format("150405")), "-") + ".pprof"
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		b.p.logf("profile: %v", err)
		return
	}
	path := filepath.Join(b.out, name)
	if err := os.WriteFile(path, prof, 0o644); err != nil {
		b.p.logf("profile: %v", err)
		return
	}
	r.Profiles = append(r.Profiles, name)
}

// cpuProfile starts a CPU profile of the room; the returned function
// waits for it.
func (b *bench) cpuProfile(pr *probe) func() []byte {
	done := make(chan []byte, 1)
	go func() {
		c := &probe{admin: pr.admin, http: &http.Client{Timeout: scrapeTimeout + cpuProfileSeconds*time.Second}}
		prof, err := c.get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", cpuProfileSeconds))
		if err != nil {
			b.p.logf("cpu profile: %v", err)
		}
		done <- prof
	}()
	return func() []byte { return <-done }
}

// connectPhase starts generators and draws their progress until every
// child finished connecting, sampling the rooms each second. stop, when
// it returns a reason, ends the phase early (the box's memory guard).
func (b *bench) connectPhase(spec genSpec, desc string, probes []*probe, stop func(*generators) string) (*generators, []ConnPoint, string, error) {
	spec.bin = b.f.generator
	g, err := startGenerators(spec)
	if err != nil {
		return nil, nil, "", err
	}
	bar := b.p.count(spec.n, "conn", desc)
	var series []ConnPoint
	sample := func() {
		var pt ConnPoint
		for _, pr := range probes {
			s, err := pr.Sample()
			if err != nil {
				continue
			}
			pt.Conns += s.Connections
			pt.RSSBytes += s.RSSBytes
			pt.Heap += s.HeapInuse
		}
		series = append(series, pt)
	}
	sample()
	deadline := time.Now().Add(connectPhaseLimit)
	nextSample := time.Now().Add(sampleEvery)
	reason := ""
	// Woken as the last child reports, not at the next tick: the connect
	// scenario's cluster mode times the phase's end.
	allReady := g.allReady()
	for !g.Ready() {
		if !b.p.sleepUntil(allReady, phaseTick) {
			reason = "interrupted"
			break
		}
		ok, failed := g.Progress()
		_ = bar.Set64(ok + failed)
		if time.Now().After(nextSample) {
			sample()
			nextSample = time.Now().Add(sampleEvery)
		}
		if stop != nil {
			if reason = stop(g); reason != "" {
				break
			}
		}
		if time.Now().After(deadline) {
			reason = fmt.Sprintf("connect phase exceeded %v", connectPhaseLimit)
			break
		}
	}
	ok, failed := g.Progress()
	_ = bar.Set64(ok + failed)
	b.p.done(bar)
	sample()
	return g, series, reason, nil
}

// fillErrors copies a generator outcome's errors into r.
func (r *Result) fillErrors(gr *genResult) {
	n, kinds := gr.Errors()
	r.Errors += n
	for k, v := range kinds {
		r.ErrorKinds[k] += v
	}
}

// perConn divides a growth by the connections it served.
func perConn(after, before float64, conns float64) float64 {
	if conns <= 0 {
		return 0
	}
	return (after - before) / conns
}

package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Range of recorded latencies: values are microseconds, so 1 µs .. 2 min
// with three significant digits (0.1% error) fits every phase of a run,
// from a loopback PING to a connect that waited out a full auth timeout.
const (
	histMinMicros = 1
	histMaxMicros = int64(2 * time.Minute / time.Microsecond)
	histSigFigs   = 3
)

// hist is an HDR histogram of durations safe for concurrent recording.
// Percentiles of merged histograms stay exact to histSigFigs, which is why
// children ship their histograms rather than their percentiles.
type hist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	// clipped counts values beyond histMaxMicros, recorded as the maximum.
	clipped int64
}

func newHist() *hist {
	return &hist{h: hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)}
}

// Record adds one duration; values outside the range are clamped.
func (l *hist) Record(d time.Duration) {
	us := d.Microseconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		l.h = hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
	}
	switch {
	case us < histMinMicros:
		us = histMinMicros
	case us > histMaxMicros:
		us = histMaxMicros
		l.clipped++
	}
	_ = l.h.RecordValue(us) // in range by construction
}

// Merge adds every value of o.
func (l *hist) Merge(o *hist) {
	if o == nil {
		return
	}
	o.mu.Lock()
	c := o.h
	if c != nil {
		c = c.Clone()
	}
	clipped := o.clipped
	o.mu.Unlock()
	if c == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		l.h = hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
	}
	l.h.Merge(c)
	l.clipped += clipped
}

// Encode is the compressed HDR form children send their parent.
func (l *hist) Encode() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		return nil, nil
	}
	b, err := l.h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("histogram: encode: %w", err)
	}
	return b, nil
}

// decodeHist reverses Encode; an empty input is an empty histogram.
func decodeHist(b []byte) (*hist, error) {
	if len(b) == 0 {
		return newHist(), nil
	}
	h, err := hdrhistogram.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("histogram: decode: %w", err)
	}
	return &hist{h: h}, nil
}

// LatencyMS is the latency summary of the bench results, in milliseconds.
type LatencyMS struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// Summary reads the percentiles; an empty histogram gives zeros.
func (l *hist) Summary() LatencyMS {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil || l.h.TotalCount() == 0 {
		return LatencyMS{}
	}
	q := func(p float64) float64 { return float64(l.h.ValueAtQuantile(p)) / 1000 }
	return LatencyMS{Count: l.h.TotalCount(), P50: q(50), P90: q(90), P99: q(99), P999: q(99.9),
		Max: float64(l.h.Max()) / 1000}
}

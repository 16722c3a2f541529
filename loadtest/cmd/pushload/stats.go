package main

import (
	"slices"
	"sync"
	"time"
)

// maxLatencySamples bounds the memory of one run's latency record; beyond it
// samples are kept by reservoir sampling, which leaves percentiles unbiased.
const maxLatencySamples = 1 << 20

// latencies collects durations from many goroutines.
type latencies struct {
	mu   sync.Mutex
	v    []time.Duration
	seen int
	max  time.Duration
	rng  uint64
}

func (l *latencies) Add(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rng == 0 {
		l.rng = 88172645463325252
	}
	l.seen++
	l.max = max(l.max, d)
	if len(l.v) < maxLatencySamples {
		l.v = append(l.v, d)
		return
	}
	// xorshift: cheap and good enough to pick a slot to replace.
	l.rng ^= l.rng << 13
	l.rng ^= l.rng >> 7
	l.rng ^= l.rng << 17
	if j := int(l.rng % uint64(l.seen)); j < len(l.v) {
		l.v[j] = d
	}
}

// Percentiles are milliseconds, as JSON readers expect them.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func (l *latencies) Summary() Percentiles {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := slices.Clone(l.v)
	slices.Sort(v)
	return Percentiles{Count: l.seen, P50: ms(pick(v, 0.50)), P90: ms(pick(v, 0.90)),
		P99: ms(pick(v, 0.99)), Max: ms(l.max)}
}

// pick returns the q-quantile of sorted v (nearest rank).
func pick(v []time.Duration, q float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	i := int(q*float64(len(v))+0.5) - 1
	return v[min(max(i, 0), len(v)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// counts is a concurrent map of outcome name to count.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) Add(k string, n int) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k] += n
	c.mu.Unlock()
}

func (c *counts) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

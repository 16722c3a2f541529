package main

import (
	"sync"
	"time"
)

// latencies collects durations from many goroutines into an HDR
// histogram (hist.go), so memory stays fixed however long a run lasts.
type latencies struct {
	h hist
}

func (l *latencies) Add(d time.Duration) { l.h.Record(d) }

// Percentiles are milliseconds, as JSON readers expect them (the result
// format of the conns, push and multi scenarios).
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func (l *latencies) Summary() Percentiles {
	s := l.h.Summary()
	return Percentiles{Count: int(s.Count), P50: s.P50, P90: s.P90, P99: s.P99, P999: s.P999, Max: s.Max}
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

// Total is the sum of every count.
func (c *counts) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.m {
		n += v
	}
	return n
}

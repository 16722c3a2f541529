package main

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// WithLabelValues hashes its labels and looks the child up under a lock on
// every call; on the push path that was paid several times per request
// (BenchmarkPushHTTP). The children a request always reaches are looked up
// once, on first use, so what is scraped is unchanged: a series still
// appears only once a request has counted in it.

// requestCounters caches one route's OK child of requests; errors, rarer
// and of many codes, still go through the vector.
type requestCounters struct {
	vec  *prometheus.CounterVec
	name string
	ok   func() prometheus.Counter
}

func newRequestCounters(vec *prometheus.CounterVec, name string) *requestCounters {
	return &requestCounters{vec: vec, name: name,
		ok: sync.OnceValue(func() prometheus.Counter { return vec.WithLabelValues(name, codeOK) })}
}

func (c *requestCounters) inc(code string) {
	if code == codeOK {
		c.ok().Inc()
		return
	}
	c.vec.WithLabelValues(c.name, code).Inc()
}

// latencyByQoS caches one route's pushLatency children for QoS 0 and 1,
// the only values validation lets through.
type latencyByQoS [2]func() prometheus.Observer

func newLatencyByQoS(vec *prometheus.HistogramVec, route string) *latencyByQoS {
	var l latencyByQoS
	for q := range l {
		l[q] = sync.OnceValue(func() prometheus.Observer { return vec.WithLabelValues(route, strconv.Itoa(q)) })
	}
	return &l
}

func (l *latencyByQoS) observe(qos uint32, seconds float64) {
	l[min(qos, 1)]().Observe(seconds)
}

package main

import "github.com/prometheus/client_golang/prometheus"

// tagMetrics show where tag reads are answered and how fills go.
type tagMetrics struct {
	reads *prometheus.CounterVec
	fills *prometheus.CounterVec
}

func newTagMetrics(reg prometheus.Registerer) *tagMetrics {
	m := &tagMetrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_saver_tag_reads_total",
			Help: "Tag reads by call (user_tags, membership) and source: redis (a complete set), mysql (set missing, untrusted, or Redis failed).",
		}, []string{"call", "source"}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_saver_tag_fills_total",
			Help: "Background refills of tag sets from MySQL by result: done, raced (a write came meanwhile; dropped), failed, dropped (queue full).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.reads, m.fills)
	return m
}

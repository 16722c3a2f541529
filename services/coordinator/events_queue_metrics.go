package main

import (
	"github.com/prometheus/client_golang/prometheus"
)

// appQueueDesc is the per-app depth of the in-memory event queues: which
// business's webhook holds events back, beside the total in
// pushgw_coordinator_events_queued. One series per app that has had an
// event since start: bounded by the apps in the config (queues are made
// only for apps that exist, and never for other names).
var appQueueDesc = prometheus.NewDesc("pushgw_coordinator_events_app_queued",
	"Events leased from saver and waiting in one app's queue.", []string{"app"}, nil)

// appQueueCollector reads the queues' counters at scrape time, so the
// delivery path keeps no second count.
type appQueueCollector struct{ d *eventDelivery }

func (c appQueueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- appQueueDesc }

func (c appQueueCollector) Collect(ch chan<- prometheus.Metric) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	for app, q := range c.d.queues {
		ch <- prometheus.MustNewConstMetric(appQueueDesc, prometheus.GaugeValue, float64(q.queued.Load()), app)
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The per-app queue depth reads each app's queue counter at scrape time.
func TestAppQueueCollector(t *testing.T) {
	d := &eventDelivery{queues: map[string]*appEvents{"mail": {}, "news": {}}}
	d.queues["mail"].queued.Store(7)
	reg := prometheus.NewRegistry()
	reg.MustRegister(appQueueCollector{d})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "pushgw_coordinator_events_app_queued" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var app []string
			for _, l := range m.GetLabel() {
				app = append(app, l.GetName()+"="+l.GetValue())
			}
			got[strings.Join(app, ",")] = m.GetGauge().GetValue()
		}
	}
	if len(got) != 2 || got["app=mail"] != 7 || got["app=news"] != 0 {
		t.Fatalf("per-app queue depth %v, want mail 7 and news 0", got)
	}
}

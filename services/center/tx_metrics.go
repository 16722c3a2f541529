package main

import "github.com/prometheus/client_golang/prometheus"

// txMetrics are center's transactional figures. Records per state live in
// saver (pushgw_saver_tx_records).
type txMetrics struct {
	prepared     prometheus.Counter
	decided      *prometheus.CounterVec
	decisionTime *prometheus.HistogramVec
	checks       *prometheus.CounterVec
	checkSeconds prometheus.Histogram
	checksBusy   prometheus.Gauge
}

func newTxMetrics(reg prometheus.Registerer) *txMetrics {
	m := &txMetrics{
		prepared: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_center_tx_prepared_total", Help: "Half-records prepared (idempotent replays not counted).",
		}),
		decided: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_center_tx_decided_total",
			Help: "Transactions decided by this center, by resulting state (committed, rolled_back, expired) and decider (api, check-back, expiry).",
		}, []string{"state", "by"}),
		decisionTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushgw_center_tx_decision_seconds",
			Help:    "Time from prepare to decision, by resulting state.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 17),
		}, []string{"state"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_center_tx_checks_total",
			Help: "Check-backs made, by outcome (commit, rollback, unknown, failed, no_url, invalid_answer).",
		}, []string{"outcome"}),
		checkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pushgw_center_tx_check_duration_seconds", Help: "Duration of one check-back call.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		checksBusy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_center_tx_checks_in_flight", Help: "Check-back calls running now.",
		}),
	}
	reg.MustRegister(m.prepared, m.decided, m.decisionTime, m.checks, m.checkSeconds, m.checksBusy)
	return m
}

package main

import "github.com/prometheus/client_golang/prometheus"

// txMetrics are saver's half-record figures: transitions as they happen
// and, from the tx sweep, how many records each state holds.
type txMetrics struct {
	transitions *prometheus.CounterVec
	records     *prometheus.GaugeVec
	claimed     prometheus.Counter
	pruned      prometheus.Counter
}

func newTxMetrics(reg prometheus.Registerer) *txMetrics {
	m := &txMetrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_saver_tx_transitions_total",
			Help: "Half-records entering a state (prepared, committed, rolled_back, expired).",
		}, []string{"state"}),
		records: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushgw_saver_tx_records",
			Help: "Half-records in MySQL by state, as of the last tx sweep.",
		}, []string{"state"}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_saver_tx_check_claims_total", Help: "Prepared records leased to a center for a check-back.",
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_saver_tx_pruned_total", Help: "Decided records deleted after the retention.",
		}),
	}
	reg.MustRegister(m.transitions, m.records, m.claimed, m.pruned)
	return m
}

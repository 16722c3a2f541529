package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type metrics struct {
	rpc         *prometheus.HistogramVec
	sessions    *prometheus.CounterVec
	lookupUsers prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushgw_register_rpc_duration_seconds",
			Help:    "Duration of register gRPC calls by method and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}, []string{"method", "code"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_register_sessions_total",
			Help: "Sessions handled, by outcome (put, refresh, refresh_missing, refresh_superseded, delete, delete_kept, lookup_found).",
		}, []string{"outcome"}),
		lookupUsers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_register_lookup_users_total",
			Help: "Users looked up.",
		}),
	}
	reg.MustRegister(m.rpc, m.sessions, m.lookupUsers)
	return m
}

// interceptor times every call.
func (m *metrics) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.rpc.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

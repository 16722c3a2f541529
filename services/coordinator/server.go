package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// maxUplinkPayload matches the client frame limit: anything larger could
// not have come from a well-behaved room.
const maxUplinkPayload = 64 << 10

type metrics struct {
	uplinks  *prometheus.CounterVec
	duration prometheus.Histogram
	inflight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		uplinks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_coordinator_uplinks_total",
			Help: "Uplinks by result code (OK, UPLINK_FAILED, UPLINK_NO_WEBHOOK, UNAVAILABLE, ...).",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushgw_coordinator_webhook_duration_seconds",
			Help:    "Time of webhook calls, failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_coordinator_webhooks_inflight",
			Help: "Webhook calls in progress.",
		}),
	}
	reg.MustRegister(m.uplinks, m.duration, m.inflight)
	return m
}

type server struct {
	internalpb.UnimplementedCoordinatorServer
	apps *appconfig.Store
	hook *webhookClient
	// sem bounds concurrent webhook calls; a full semaphore answers
	// UNAVAILABLE at once instead of queueing uplinks without limit.
	sem chan struct{}
	m   *metrics
	log *slog.Logger
}

func newServer(apps *appconfig.Store, timeout time.Duration, concurrency int, m *metrics, log *slog.Logger) *server {
	return &server{
		apps: apps, hook: newWebhookClient(timeout, concurrency),
		sem: make(chan struct{}, concurrency), m: m, log: log,
	}
}

func (s *server) reply(code protocol.Code, msg string, payload []byte) *internalpb.UplinkReply {
	s.m.uplinks.WithLabelValues(code.String()).Inc()
	return &internalpb.UplinkReply{Code: uint32(code), Message: msg, Payload: payload}
}

// Uplink forwards one client uplink to its app's webhook. Failures are
// answered in the reply code (they go back to the client in UPLINK_REPLY),
// never as gRPC errors.
func (s *server) Uplink(ctx context.Context, req *internalpb.UplinkRequest) (*internalpb.UplinkReply, error) {
	app, ok := s.apps.Get(req.GetApp())
	if !ok || app.WebhookURL == "" {
		return s.reply(protocol.CodeUplinkNoWebhook, "app has no webhook for uplink data", nil), nil
	}
	if len(req.GetPayload()) > maxUplinkPayload {
		return s.reply(protocol.CodeUplinkTooLarge, fmt.Sprintf("uplink payload is over %d bytes", maxUplinkPayload), nil), nil
	}
	select {
	case s.sem <- struct{}{}:
	default:
		return s.reply(protocol.CodeUnavailable, "coordinator is busy; retry later", nil), nil
	}
	s.m.inflight.Inc()
	start := time.Now()
	payload, err := s.hook.call(ctx, app, req)
	s.m.duration.Observe(time.Since(start).Seconds())
	s.m.inflight.Dec()
	<-s.sem
	if err != nil {
		var we *errWebhook
		if !errors.As(err, &we) {
			we = &errWebhook{reason: "failed"}
		}
		s.log.Warn("coordinator: webhook failed", "app", app.Name, "route", req.GetRoute(), "err", err)
		return s.reply(protocol.CodeUplinkFailed, we.Error(), nil), nil
	}
	if len(payload) > maxWebhookReply {
		return s.reply(protocol.CodeUplinkFailed, "webhook reply payload is too large", nil), nil
	}
	return s.reply(protocol.CodeOK, "", payload), nil
}

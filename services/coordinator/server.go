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
	attempts *prometheus.CounterVec
	queued   prometheus.Gauge
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
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_coordinator_webhook_attempts_total",
		Help: "Webhook POSTs by result: ok, retryable (5xx, timeout, unreachable), failed (other).",
	}, []string{"result"})
	m.queued = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pushgw_coordinator_webhook_queued",
		Help: "Uplinks waiting for one of their app's webhook slots.",
	})
	reg.MustRegister(m.uplinks, m.duration, m.inflight, m.attempts, m.queued)
	return m
}

type server struct {
	internalpb.UnimplementedCoordinatorServer
	apps  *appconfig.Store
	hook  *webhookClient
	retry retryPolicy
	// perApp bounds each app's uplinks (in flight and waiting); overflow is
	// answered UPLINK_QUEUE_FULL.
	perApp *appLimiters
	// sem bounds webhook calls of all apps together; a full semaphore
	// answers UNAVAILABLE at once instead of queueing uplinks without limit.
	sem chan struct{}
	m   *metrics
	log *slog.Logger
}

// webhookLimits are the coordinator's webhook knobs (config.go).
type webhookLimits struct {
	budget         time.Duration // one uplink, retries included
	attemptTimeout time.Duration
	attempts       int
	concurrency    int // all apps
	appConcurrency int
	appQueue       int
}

func newServer(apps *appconfig.Store, lim webhookLimits, m *metrics, log *slog.Logger) *server {
	return &server{
		apps: apps, hook: newWebhookClient(lim.attemptTimeout, lim.concurrency),
		retry:  retryPolicy{attempts: lim.attempts, budget: lim.budget},
		perApp: newAppLimiters(lim.appConcurrency, lim.appQueue, m.queued),
		sem:    make(chan struct{}, lim.concurrency), m: m, log: log,
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
	// The budget counts from the uplink's arrival: time spent waiting for a
	// slot is time the retries do not get.
	ctx, cancel := s.budgetContext(ctx)
	defer cancel()
	lim := s.perApp.get(app.Name)
	if err := lim.acquire(ctx); err != nil {
		if errors.Is(err, errQueueFull) {
			return s.reply(protocol.CodeUplinkQueueFull, fmt.Sprintf("app %s's webhook is slow or down and its uplink queue is full; retry later", app.Name), nil), nil
		}
		return s.reply(protocol.CodeUplinkFailed, "webhook: no slot free before the uplink's deadline", nil), nil
	}
	defer lim.release()
	select {
	case s.sem <- struct{}{}:
	default:
		return s.reply(protocol.CodeUnavailable, "coordinator is busy; retry later", nil), nil
	}
	res := s.deliver(ctx, app, req)
	<-s.sem
	payload, err := res.payload, res.err
	if err != nil {
		var we *errWebhook
		if !errors.As(err, &we) {
			we = &errWebhook{reason: "failed"}
		}
		s.log.Warn("coordinator: webhook failed", "app", app.Name, "route", req.GetRoute(), "event", res.eventID, "attempts", res.attempts, "err", err)
		return s.reply(protocol.CodeUplinkFailed, fmt.Sprintf("%s (%d attempts)", we.Error(), res.attempts), nil), nil
	}
	if len(payload) > maxWebhookReply {
		return s.reply(protocol.CodeUplinkFailed, "webhook reply payload is too large", nil), nil
	}
	return s.reply(protocol.CodeOK, "", payload), nil
}

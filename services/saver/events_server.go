package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// eventsServer is the SaverEvents service (events.go).
type eventsServer struct {
	internalpb.UnimplementedSaverEventsServer
	db       *eventsDB
	fail     func(ctx context.Context, method string, err error) error
	recorded *prometheus.CounterVec
	log      *slog.Logger
}

func newEventsServer(s *server, reg prometheus.Registerer) *eventsServer {
	es := &eventsServer{
		db: &eventsDB{db: s.db.db, retry: s.db.retry}, fail: s.fail, log: s.log,
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_saver_events_recorded_total",
			Help: "Online/offline events stored in the outbox, by kind (receipts are counted with outcomes).",
		}, []string{"kind"}),
	}
	reg.MustRegister(es.recorded)
	return es
}

// checkEvent validates one event from a room: online or offline only
// (receipts come from saver itself), with sizes that fit the columns.
func checkEvent(e *internalpb.Event) error {
	if err := limits.CheckUser(e.GetApp(), e.GetUser()); err != nil {
		return invalid("event: %v", err)
	}
	switch {
	case e.GetKind() != internalpb.EventKind_EVENT_KIND_ONLINE && e.GetKind() != internalpb.EventKind_EVENT_KIND_OFFLINE:
		return invalid("event kind %s: rooms record online and offline only", e.GetKind())
	case len(e.GetDevice()) > maxDeviceLen:
		return invalid("event device longer than %d bytes", maxDeviceLen)
	case len(e.GetPlatform()) > maxPlatformLen, len(e.GetRoomId()) > maxRoomIDLen, len(e.GetReason()) > maxReasonLen:
		return invalid("event platform, room_id or reason too long")
	case e.GetAtMs() <= 0:
		return invalid("event at_ms must be positive")
	}
	return nil
}

func (es *eventsServer) RecordEvents(ctx context.Context, req *internalpb.RecordEventsRequest) (*internalpb.RecordEventsReply, error) {
	evs := req.GetEvents()
	if len(evs) > maxBatch {
		return nil, invalid("batch of %d events exceeds %d", len(evs), maxBatch)
	}
	for _, e := range evs {
		if err := checkEvent(e); err != nil {
			return nil, err
		}
		e.Seq, e.MessageId, e.Outcome, e.DeliveryCount, e.Attempts = 0, 0, "", 0, 0
	}
	if err := es.db.record(ctx, evs); err != nil {
		return nil, es.fail(ctx, "RecordEvents", err)
	}
	for _, e := range evs {
		es.recorded.WithLabelValues(e.GetKind().String()).Inc()
	}
	return &internalpb.RecordEventsReply{}, nil
}

func (es *eventsServer) LeaseEvents(ctx context.Context, req *internalpb.LeaseEventsRequest) (*internalpb.LeaseEventsReply, error) {
	limit := int(req.GetLimit())
	if limit <= 0 || limit > maxEventLease {
		return nil, invalid("lease limit %d: want 1..%d", limit, maxEventLease)
	}
	leaseMs := req.GetLeaseMs()
	if leaseMs < minEventLease.Milliseconds() || leaseMs > maxEventLeaseMs {
		return nil, invalid("lease_ms %d: want %d..%d", leaseMs, minEventLease.Milliseconds(), maxEventLeaseMs)
	}
	token, until, evs, err := es.db.lease(ctx, limit, time.Duration(leaseMs)*time.Millisecond, time.Now())
	if err != nil {
		return nil, es.fail(ctx, "LeaseEvents", err)
	}
	return &internalpb.LeaseEventsReply{Token: token, LeaseUntilMs: until, Events: evs}, nil
}

func (es *eventsServer) FinishEvents(ctx context.Context, req *internalpb.FinishEventsRequest) (*internalpb.FinishEventsReply, error) {
	if n := len(req.GetDelivered()) + len(req.GetFailed()) + len(req.GetReleased()); n > maxEventLease {
		return nil, invalid("finish of %d events exceeds %d", n, maxEventLease)
	}
	if req.GetToken() == 0 {
		return nil, invalid("finish events: token 0")
	}
	n, err := es.db.finish(ctx, req.GetToken(), req.GetDelivered(), req.GetFailed(), req.GetReleased())
	if err != nil {
		return nil, es.fail(ctx, "FinishEvents", err)
	}
	return &internalpb.FinishEventsReply{Settled: uint32(n)}, nil
}

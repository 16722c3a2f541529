package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushgw/pushgw/proto/internalpb"
)

func gaugeOf(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var d dto.Metric
	if err := g.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetGauge().GetValue()
}

// The backlog gauges read the outbox: empty, then the events recorded with
// the oldest one's age, then empty again once they are delivered.
func TestEventBacklogGauges(t *testing.T) {
	f := newFixture(t, 2)
	es := f.events(t)
	b := newEventBacklog(es.db.db, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	b.now = func() time.Time { return now }
	if err := b.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, o := gaugeOf(t, b.pending), gaugeOf(t, b.oldest); p != 0 || o != 0 {
		t.Fatalf("empty outbox: pending %v oldest %v", p, o)
	}
	old := onOff("ann", "d1", internalpb.EventKind_EVENT_KIND_ONLINE)
	old.AtMs = now.Add(-90 * time.Second).UnixMilli()
	newer := onOff("ann", "d1", internalpb.EventKind_EVENT_KIND_OFFLINE)
	newer.AtMs = now.UnixMilli()
	if _, err := es.RecordEvents(callCtx(t), &internalpb.RecordEventsRequest{Events: []*internalpb.Event{old, newer}}); err != nil {
		t.Fatal(err)
	}
	if err := b.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, o := gaugeOf(t, b.pending), gaugeOf(t, b.oldest); p != 2 || o < 89 || o > 91 {
		t.Fatalf("two events: pending %v oldest %vs, want 2 and 90s", p, o)
	}
	r := leaseAll(t, es, 10)
	if _, err := es.FinishEvents(callCtx(t), &internalpb.FinishEventsRequest{Token: r.GetToken(), Delivered: eventSeqs(r.GetEvents())}); err != nil {
		t.Fatal(err)
	}
	if err := b.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, o := gaugeOf(t, b.pending), gaugeOf(t, b.oldest); p != 0 || o != 0 {
		t.Fatalf("after delivery: pending %v oldest %v", p, o)
	}
	// A cancelled context fails the round (counted by run), never hangs.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.refresh(ctx); err == nil {
		t.Fatal("refresh with a cancelled context succeeded")
	}
}

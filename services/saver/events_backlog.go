package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The outbox backlog gauges (docs/OPERATIONS.md "Callbacks and receipts"):
// how many events wait for the coordinators and how long the oldest has
// waited, read by a periodic query so a webhook outage, a stuck
// coordinator or rooms holding events show on a dashboard and page
// someone before the -event-max-age drop. Both queries are bounded: the
// count stops at eventBacklogCap rows (a backlog past it reads as the cap),
// the oldest is the first row by primary key, and each round has a
// deadline.
const (
	eventBacklogEvery   = 15 * time.Second
	eventBacklogTimeout = 5 * time.Second
	eventBacklogCap     = 1_000_000
)

type eventBacklog struct {
	db      *sql.DB
	pending prometheus.Gauge
	oldest  prometheus.Gauge
	errors  prometheus.Counter
	log     *slog.Logger
	now     func() time.Time
}

func newEventBacklog(db *sql.DB, reg prometheus.Registerer, log *slog.Logger) *eventBacklog {
	b := &eventBacklog{db: db, log: log, now: time.Now,
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_saver_events_pending",
			Help: fmt.Sprintf("Callback and receipt events in the outbox, not yet delivered (counted up to %d).", eventBacklogCap),
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_saver_events_oldest_age_seconds",
			Help: "Age of the oldest undelivered event in the outbox (0 when empty).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_saver_events_backlog_errors_total",
			Help: "Outbox backlog queries that failed (the gauges keep their last values).",
		}),
	}
	reg.MustRegister(b.pending, b.oldest, b.errors)
	return b
}

// run refreshes the gauges every interval until ctx ends.
func (b *eventBacklog) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := b.refresh(ctx); err != nil && ctx.Err() == nil {
			b.errors.Inc()
			b.log.Warn("saver: outbox backlog query failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh reads the backlog once, within eventBacklogTimeout.
func (b *eventBacklog) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, eventBacklogTimeout)
	defer cancel()
	var n int64
	if err := b.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM (SELECT 1 FROM events LIMIT ?) AS t", eventBacklogCap).Scan(&n); err != nil {
		return fmt.Errorf("count: %w", err)
	}
	var at int64
	err := b.db.QueryRowContext(ctx, "SELECT at_ms FROM events ORDER BY seq LIMIT 1").Scan(&at)
	switch {
	case err == sql.ErrNoRows:
		at = 0
	case err != nil:
		return fmt.Errorf("oldest: %w", err)
	}
	b.pending.Set(float64(n))
	age := 0.0
	if at > 0 {
		age = max(0, b.now().Sub(time.UnixMilli(at)).Seconds())
	}
	b.oldest.Set(age)
	return nil
}

package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// The redelivery sweep recovers live deliveries that never happened
// (center killed between store and delivery, a room hung or unreachable,
// a failed register lookup): saver hands out messages no room reported
// delivered, and they go down the same batched path as live pushes.
const (
	defaultRedeliverInterval = 2 * time.Second
	// redeliverLimit is saver's own bound on one claim.
	redeliverLimit = 500
	// redeliverMinAge is how long a message may go unreported before the
	// sweep takes it. Live delivery reports within milliseconds; what is
	// still unreported after 3 s lost its center (killed between store and
	// delivery: the retrier died with it) or is in the retrier, whose next
	// attempt may overlap the sweep's — harmless, since a room writes an
	// id once per connection. With the old 10 s (live delivery's deadline)
	// a center killed mid-delivery held its messages for 10–15 s.
	redeliverMinAge = 3 * time.Second
)

// redeliverer claims undelivered messages from saver every interval.
type redeliverer struct {
	saver    internalpb.SaverClient
	batch    *deliveryBatcher
	m        *metrics
	log      *slog.Logger
	interval time.Duration

	cancel context.CancelFunc
	done   chan struct{}
}

// startRedeliverer runs the sweep until stop.
func startRedeliverer(s *Server, interval time.Duration) *redeliverer {
	ctx, cancel := context.WithCancel(context.Background())
	r := &redeliverer{saver: s.saver, batch: s.batch, m: s.m, log: s.log, interval: interval, cancel: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r
}

func (r *redeliverer) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.sweep(ctx)
		}
	}
}

// sweep claims one round and queues it. Messages that do not fit in the
// queue are dropped here: they stay stored and saver hands them out again
// after their backoff.
func (r *redeliverer) sweep(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
	resp, err := r.saver.ClaimUndelivered(cctx, &internalpb.ClaimUndeliveredRequest{
		Limit: redeliverLimit, MinAgeMs: redeliverMinAge.Milliseconds(),
	})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.m.deliveryFails.WithLabelValues("claim").Inc()
			r.log.Warn("center: redelivery claim failed; retrying next round", "err", err)
		}
		return
	}
	msgs := resp.GetMessages()
	if len(msgs) == 0 {
		return
	}
	rest := r.batch.enqueue(msgs)
	r.m.redelivered.Add(float64(len(msgs) - len(rest)))
	if len(rest) > 0 {
		r.log.Warn("center: delivery queue full; redelivery deferred to the next claim", "skipped", len(rest))
	}
	r.log.Debug("center: redelivering", "count", len(msgs)-len(rest), "first_id", msgs[0].GetId())
}

// stop ends the sweep and waits for a round in progress.
func (r *redeliverer) stop() {
	r.cancel()
	<-r.done
}

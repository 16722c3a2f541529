package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// A live delivery that failed for a passing reason (Register restarting, a
// room hung or just back from losing its etcd lease, a user reconnecting
// elsewhere) is tried again a moment later, so an online user does not
// wait for the redelivery sweep, which only looks at messages older than
// asyncDeliveryTimeout. The retrier is only a shortcut: every message it
// holds is stored, and what it drops the sweep still finds.
const (
	// retryQueueMax bounds the messages waiting for a retry; beyond it
	// they are left to the sweep.
	retryQueueMax = 8192
	// retryTick is how often due retries are sent.
	retryTick = 250 * time.Millisecond
)

// retryDelays are the waits before each retry; after the last the message
// is left to the sweep. They stay short and steady for about 12 s: a
// register restarting or a user moving rooms is back within seconds, and
// a message should reach them within one step of that, not wait out a
// growing back-off (the fault suite's register kill windows had p99s of
// 3 s and more with 0.5, 2 and 5 s). Past that the sweep's slower
// schedule takes over.
var retryDelays = [...]time.Duration{
	500 * time.Millisecond, time.Second, time.Second, time.Second,
	2 * time.Second, 2 * time.Second, 2 * time.Second, 3 * time.Second,
}

type retryItem struct {
	m       *internalpb.Message
	attempt int // retries already made
	due     time.Time
}

type retrier struct {
	deliver func(context.Context, []*internalpb.Message) (int, []*internalpb.Message, error)
	// states, when set, is asked before each round what became of its
	// messages (retry_check.go); nil pushes unchecked.
	states retryStates
	m      *metrics
	log    *slog.Logger

	mu    sync.Mutex
	items []retryItem

	cancel context.CancelFunc
	done   chan struct{}
}

func newRetrier(deliver func(context.Context, []*internalpb.Message) (int, []*internalpb.Message, error), states retryStates, m *metrics, log *slog.Logger) *retrier {
	ctx, cancel := context.WithCancel(context.Background())
	r := &retrier{deliver: deliver, states: states, m: m, log: log, cancel: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r
}

// add schedules msgs for retry number attempt+1; it never blocks.
func (r *retrier) add(msgs []*internalpb.Message, attempt int) {
	if attempt >= len(retryDelays) {
		r.m.retryDropped.WithLabelValues("gave_up").Add(float64(len(msgs)))
		return
	}
	due := time.Now().Add(retryDelays[attempt])
	r.mu.Lock()
	room := retryQueueMax - len(r.items)
	take := min(room, len(msgs))
	for _, m := range msgs[:take] {
		r.items = append(r.items, retryItem{m: m, attempt: attempt, due: due})
	}
	r.mu.Unlock()
	if take < len(msgs) {
		r.m.retryDropped.WithLabelValues("queue_full").Add(float64(len(msgs) - take))
	}
}

// due removes and returns up to deliveryBatchMax items whose time came
// (at most retryCheckMax, so one States call checks them all).
func (r *retrier) due(now time.Time) []retryItem {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []retryItem
	keep := r.items[:0]
	for _, it := range r.items {
		if len(out) < min(deliveryBatchMax, retryCheckMax) && !it.due.After(now) {
			out = append(out, it)
		} else {
			keep = append(keep, it)
		}
	}
	clear(r.items[len(keep):])
	r.items = keep
	return out
}

func (r *retrier) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(retryTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if items := r.due(now); len(items) > 0 {
				r.retry(ctx, items, now)
			}
		}
	}
}

func (r *retrier) retry(ctx context.Context, items []retryItem, now time.Time) {
	items, ok := r.check(ctx, items, now)
	if !ok {
		// Saver could not answer (down, or past retryCheckTimeout). Only a
		// message with a collapse key may have become harmful to push (a
		// newer one replaced it, and the client must never see the old
		// one), so those wait for the next round, counted as an attempt;
		// after the last they are left to the redelivery sweep, which asks
		// saver anyway. The others are pushed unchecked, as before the
		// check existed: one acked meanwhile is dropped by its client by
		// id (and by the room's acked window on the same connection), and
		// a saver outage must not hold every live retry until the sweep.
		var push []retryItem
		next := map[int][]*internalpb.Message{}
		for _, it := range items {
			if it.m.GetCollapseKey() == "" {
				push = append(push, it)
				continue
			}
			next[it.attempt+1] = append(next[it.attempt+1], it.m)
		}
		for a, ms := range next {
			r.m.retryHeld.Add(float64(len(ms)))
			r.add(ms, a)
		}
		items = push
	}
	if len(items) == 0 {
		return
	}
	msgs := make([]*internalpb.Message, len(items))
	attempt := make(map[uint64]int, len(items))
	for i, it := range items {
		msgs[i] = it.m
		attempt[it.m.GetId()] = it.attempt
	}
	r.m.retries.Add(float64(len(msgs)))
	cctx, cancel := context.WithTimeout(ctx, asyncDeliveryTimeout)
	_, missed, err := r.deliver(cctx, msgs)
	cancel()
	if err != nil && ctx.Err() == nil {
		r.log.Debug("center: delivery retry failed", "count", len(msgs), "err", err)
	}
	// Group by next attempt so each group gets its own delay.
	next := map[int][]*internalpb.Message{}
	for _, m := range missed {
		a := attempt[m.GetId()] + 1
		next[a] = append(next[a], m)
	}
	for a, ms := range next {
		r.add(ms, a)
	}
}

// stop ends the retrier; what it held stays stored for the sweep.
func (r *retrier) stop() {
	r.cancel()
	<-r.done
}

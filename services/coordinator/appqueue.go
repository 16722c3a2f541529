package main

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// errQueueFull: the app already has its limit of uplinks in flight and
// waiting. The uplink is refused at once rather than held in memory.
var errQueueFull = errors.New("coordinator: app's webhook queue is full")

// appLimiter bounds one app's uplinks: inFlight calls at a time, and at most
// queue more waiting for a slot. One app with a slow or failing webhook thus
// holds at most inFlight+queue uplinks and cannot take the slots of others.
type appLimiter struct {
	slots chan struct{}
	// waiting is a token per uplink that is waiting for a slot; its capacity
	// is the queue bound.
	waiting chan struct{}
	queued  prometheus.Gauge
}

// acquire takes a slot for one call, waiting while ctx allows if the app's
// slots are taken. release must follow a nil error.
func (l *appLimiter) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case l.waiting <- struct{}{}:
	default:
		return errQueueFull
	}
	l.queued.Inc()
	defer func() {
		<-l.waiting
		l.queued.Dec()
	}()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *appLimiter) release() { <-l.slots }

// appLimiters holds a limiter per app. Its size is bounded by the apps in
// the config: Uplink checks the app exists before asking for its limiter.
type appLimiters struct {
	inFlight, queue int
	queued          prometheus.Gauge

	mu sync.Mutex
	m  map[string]*appLimiter
}

func newAppLimiters(inFlight, queue int, queued prometheus.Gauge) *appLimiters {
	return &appLimiters{inFlight: inFlight, queue: queue, queued: queued, m: make(map[string]*appLimiter)}
}

func (a *appLimiters) get(app string) *appLimiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.m[app]
	if !ok {
		l = &appLimiter{slots: make(chan struct{}, a.inFlight), waiting: make(chan struct{}, a.queue), queued: a.queued}
		a.m[app] = l
	}
	return l
}

package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Event delivery (docs/OPERATIONS.md, "Callbacks and receipts"): events
// wait in saver's MySQL outbox; the coordinator leases them in batches,
// queues each user's run of events (a chain) on its app's bounded queue,
// and the app's workers POST them in order, settling each lease with
// saver. An event is never in memory only: overflow, failures and a
// coordinator that dies all leave it in MySQL, to be leased again.

// Fixed parts of event delivery (the knobs are flags, config.go).
const (
	// finishTimeout bounds one FinishEvents call; finishAttempts calls are
	// made before a settlement is given up (the lease then runs out and
	// the events come again: at least once, de-duplicated by event id).
	finishTimeout  = 5 * time.Second
	finishAttempts = 3
	leaseTimeout   = 5 * time.Second
	// leaseMargin: a chain whose lease ends sooner than this is not
	// posted (another coordinator may take it) but released.
	leaseMargin = 2 * time.Second
	// pollErrorWait: after a failed lease call.
	pollErrorWait = time.Second
)

// eventLimits are the event delivery knobs (config.go).
type eventLimits struct {
	poll      time.Duration // wait between lease calls that found nothing
	lease     time.Duration // how long a leased event is ours
	batch     int           // events per lease call
	appQueue  int           // events waiting per app, in memory
	workers   int           // posting goroutines per app
	retryBase time.Duration // first back-off after a failed POST
	retryMax  time.Duration // back-off cap
	maxAge    time.Duration // an event older than this is dropped
}

type eventMetrics struct {
	events *prometheus.CounterVec
	queued prometheus.Gauge
	leases *prometheus.CounterVec
}

func newEventMetrics(reg prometheus.Registerer) *eventMetrics {
	m := &eventMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_coordinator_events_total",
			Help: "Callback and receipt events by result: delivered (2xx), retried (POST failed, back-off in MySQL), deferred (app's webhook failing, not tried), " +
				"overflow (app's queue full, left in MySQL), expired_lease (lease too short to post), dropped (app gone, not subscribed, or older than -event-max-age).",
		}, []string{"result"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_coordinator_events_queued",
			Help: "Events leased from saver and waiting in the apps' queues.",
		}),
		leases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_coordinator_event_leases_total",
			Help: "LeaseEvents calls by result: ok, empty, error.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.events, m.queued, m.leases)
	return m
}

// chain is one user's run of leased events, oldest first.
type chain struct {
	token uint64
	until time.Time
	app   string
	evs   []*internalpb.Event
}

// appEvents is one app's bounded queue and its delivery state.
type appEvents struct {
	ch     chan *chain
	queued atomic.Int64 // events in ch
	// downUntil (unix ms): the app's webhook failed; chains dequeued
	// before then are deferred to it without a POST.
	downUntil atomic.Int64
	failures  atomic.Int32
}

type eventDelivery struct {
	saver internalpb.SaverEventsClient
	apps  *appconfig.Store
	hook  *webhookClient
	lim   eventLimits
	m     *eventMetrics
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	queues map[string]*appEvents
	wg     sync.WaitGroup
}

func newEventDelivery(saver internalpb.SaverEventsClient, apps *appconfig.Store, hook *webhookClient, lim eventLimits, m *eventMetrics, log *slog.Logger) *eventDelivery {
	return &eventDelivery{saver: saver, apps: apps, hook: hook, lim: lim, m: m, log: log, now: time.Now, queues: map[string]*appEvents{}}
}

// run leases and dispatches until ctx ends, then waits for the workers
// (each finishes the POST it is making; queued chains are released).
func (d *eventDelivery) run(ctx context.Context) {
	defer d.wg.Wait()
	for {
		n, err := d.pollOnce(ctx)
		wait := d.lim.poll
		switch {
		case err != nil:
			wait = pollErrorWait
		case n >= d.lim.batch:
			wait = 0 // more are waiting
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
	}
}

// pollOnce leases one batch and queues its chains; it returns how many
// events were leased.
func (d *eventDelivery) pollOnce(ctx context.Context) (int, error) {
	lctx, cancel := context.WithTimeout(ctx, leaseTimeout)
	r, err := d.saver.LeaseEvents(lctx, &internalpb.LeaseEventsRequest{Limit: uint32(d.lim.batch), LeaseMs: d.lim.lease.Milliseconds()})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			d.m.leases.WithLabelValues("error").Inc()
			d.log.Warn("coordinator: lease events failed", "err", err)
		}
		return 0, err
	}
	if len(r.GetEvents()) == 0 {
		d.m.leases.WithLabelValues("empty").Inc()
		return 0, nil
	}
	d.m.leases.WithLabelValues("ok").Inc()
	until := time.UnixMilli(r.GetLeaseUntilMs())
	var settle settlement
	for _, c := range chainsOf(r.GetToken(), until, r.GetEvents()) {
		d.dispatch(ctx, c, &settle)
	}
	d.finish(r.GetToken(), &settle)
	return len(r.GetEvents()), nil
}

// chainsOf splits a lease into per-user chains, keeping the lease's order
// (by seq, so each chain is oldest first).
func chainsOf(token uint64, until time.Time, evs []*internalpb.Event) []*chain {
	type key struct{ app, user string }
	idx := map[key]*chain{}
	var out []*chain
	for _, e := range evs {
		k := key{e.GetApp(), e.GetUser()}
		c, ok := idx[k]
		if !ok {
			c = &chain{token: token, until: until, app: e.GetApp()}
			idx[k] = c
			out = append(out, c)
		}
		c.evs = append(c.evs, e)
	}
	return out
}

// eventName is the subscription a kind needs (appconfig.Event*) and the
// "type" it has on the wire.
func eventName(k internalpb.EventKind) (sub, typ string) {
	switch k {
	case internalpb.EventKind_EVENT_KIND_RECEIPT:
		return appconfig.EventReceipts, "receipt"
	case internalpb.EventKind_EVENT_KIND_ONLINE:
		return appconfig.EventOnline, "online"
	case internalpb.EventKind_EVENT_KIND_OFFLINE:
		return appconfig.EventOffline, "offline"
	}
	return "", ""
}

// wanted reports whether e should still be posted: its app exists, has a
// webhook and subscribes to its kind, and it is not older than maxAge.
func (d *eventDelivery) wanted(app appconfig.App, ok bool, e *internalpb.Event) bool {
	sub, _ := eventName(e.GetKind())
	if !ok || app.WebhookURL == "" || sub == "" || !app.Subscribes(sub) {
		return false
	}
	return d.now().Sub(time.UnixMilli(e.GetAtMs())) <= d.lim.maxAge
}

// dispatch queues c on its app's queue, or settles it at once: unwanted
// events are dropped (deleted), a full queue leaves the chain in MySQL.
func (d *eventDelivery) dispatch(ctx context.Context, c *chain, settle *settlement) {
	app, ok := d.apps.Get(c.app)
	keep := c.evs[:0:0]
	for _, e := range c.evs {
		if d.wanted(app, ok, e) {
			keep = append(keep, e)
			continue
		}
		// Dropping a head does not reorder: the rest are still after it.
		settle.delivered = append(settle.delivered, e.GetSeq())
		d.m.events.WithLabelValues("dropped").Inc()
	}
	if len(keep) == 0 {
		return
	}
	c.evs = keep
	q := d.queue(ctx, c.app)
	if q.queued.Add(int64(len(c.evs))) > int64(d.lim.appQueue) {
		q.queued.Add(-int64(len(c.evs)))
		d.m.events.WithLabelValues("overflow").Add(float64(len(c.evs)))
		d.log.Warn("coordinator: app's event queue is full; events stay in the outbox", "app", c.app, "user", c.evs[0].GetUser(), "events", len(c.evs), "queue", d.lim.appQueue)
		settle.release(c.evs)
		return
	}
	d.m.queued.Add(float64(len(c.evs)))
	// Cannot block: ch holds appQueue chains and each has an event.
	q.ch <- c
}

// queue returns app's queue, starting its workers on first use. The
// number of queues is bounded by the apps in the config (dispatch only
// queues for apps that exist).
func (d *eventDelivery) queue(ctx context.Context, app string) *appEvents {
	d.mu.Lock()
	defer d.mu.Unlock()
	q, ok := d.queues[app]
	if !ok {
		q = &appEvents{ch: make(chan *chain, d.lim.appQueue)}
		d.queues[app] = q
		for i := 0; i < d.lim.workers; i++ {
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				d.work(ctx, app, q)
			}()
		}
	}
	return q
}

// work posts q's chains until ctx ends; the chains still queued then are
// released.
func (d *eventDelivery) work(ctx context.Context, appName string, q *appEvents) {
	for {
		var c *chain
		select {
		case <-ctx.Done():
			d.releaseQueued(q)
			return
		case c = <-q.ch:
		}
		batch := []*chain{c}
		n := len(c.evs)
		app, ok := d.apps.Get(appName)
		limit := 1
		if ok {
			limit = app.EventBatch()
		}
	gather:
		for n < limit {
			select {
			case c := <-q.ch:
				batch = append(batch, c)
				n += len(c.evs)
			default:
				break gather
			}
		}
		q.queued.Add(-int64(n))
		d.m.queued.Sub(float64(n))
		d.deliver(ctx, app, ok, q, batch)
	}
}

func (d *eventDelivery) releaseQueued(q *appEvents) {
	for {
		select {
		case c := <-q.ch:
			q.queued.Add(-int64(len(c.evs)))
			d.m.queued.Sub(float64(len(c.evs)))
			var s settlement
			s.release(c.evs)
			d.finish(c.token, &s)
		default:
			return
		}
	}
}

// settlement is what to tell saver about one lease's events.
type settlement struct {
	delivered, released []uint64
	failed              []*internalpb.EventRetry
}

func (s *settlement) release(evs []*internalpb.Event) {
	for _, e := range evs {
		s.released = append(s.released, e.GetSeq())
	}
}

func (s *settlement) empty() bool {
	return len(s.delivered)+len(s.released)+len(s.failed) == 0
}

// finish settles one lease with saver, retrying a few times; a settlement
// that does not land leaves the events to the lease's end.
func (d *eventDelivery) finish(token uint64, s *settlement) {
	if s.empty() {
		return
	}
	req := &internalpb.FinishEventsRequest{Token: token, Delivered: s.delivered, Failed: s.failed, Released: s.released}
	var err error
	for i := 0; i < finishAttempts; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), finishTimeout)
		_, err = d.saver.FinishEvents(ctx, req)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
	}
	d.log.Warn("coordinator: could not settle events with saver; they come again after the lease", "token", token,
		"delivered", len(s.delivered), "failed", len(s.failed), "released", len(s.released), "err", err)
}

// retryDelay is the back-off after the attempts-th failed POST of an event:
// base doubled per attempt, capped, drawn from [d/2, d) so that events that
// failed together do not come back in step.
func (d *eventDelivery) retryDelay(attempts uint32) time.Duration {
	delay := d.lim.retryBase
	for i := uint32(1); i < attempts && delay < d.lim.retryMax; i++ {
		delay *= 2
	}
	delay = min(delay, d.lim.retryMax)
	return delay/2 + rand.N(delay/2+1)
}

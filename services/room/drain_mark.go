package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// drainCtl follows the room's drain mark in etcd (discovery.DrainKey,
// written by center's POST /v1/admin/rooms/{id}/drain): a mark starts a
// paced drain, a new mark changes its rate, a deleted mark cancels it, and
// a drain that has emptied the room (or reached its deadline) closes Done
// so the process shuts down and exits.
type drainCtl struct {
	s          *server
	cli        *clientv3.Client
	key        string
	log        *slog.Logger
	setHealthy func(bool)

	draining  prometheus.Gauge
	redirects prometheus.Counter
	rateGauge prometheus.Gauge

	rate atomic.Int64

	mu sync.Mutex
	// over: a requested drain finished or a SIGTERM drain took over;
	// marks are ignored from then on.
	over     bool
	cancel   context.CancelFunc
	running  chan struct{} // closed when the running drain ends; nil when none
	finished chan struct{} // closed when a requested drain is done

	watchCancel context.CancelFunc
	watchDone   chan struct{}
}

// watchDrain starts following the drain mark. setHealthy is the admin
// /healthz switch (503 "draining" while a drain runs).
func (s *server) watchDrain(cli *clientv3.Client, reg prometheus.Registerer, setHealthy func(bool)) *drainCtl {
	d := &drainCtl{
		s: s, cli: cli, key: discovery.DrainKey(s.cfg.common.Cluster, s.cfg.common.Instance), log: s.log, setHealthy: setHealthy,
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_room_draining",
			Help: "1 while the room drains (requested through etcd or on SIGTERM), else 0.",
		}),
		redirects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_room_drain_redirects_total",
			Help: "Clients sent REDIRECT by a paced drain.",
		}),
		rateGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_room_drain_rate",
			Help: "Clients per second the running drain redirects (0 when none runs).",
		}),
		finished:  make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	reg.MustRegister(d.draining, d.redirects, d.rateGauge)
	s.drain = d
	ctx, cancel := context.WithCancel(context.Background())
	d.watchCancel = cancel
	go d.watch(ctx)
	return d
}

// Done is closed when a requested drain has finished.
func (d *drainCtl) Done() <-chan struct{} { return d.finished }

// sent counts one client told to go.
func (d *drainCtl) sent() {
	if d != nil {
		d.redirects.Inc()
	}
}

// takeOver ends the watch and any requested drain before a SIGTERM drain
// runs: that one finishes the job from where this one got.
func (d *drainCtl) takeOver() {
	if d == nil {
		return
	}
	d.watchCancel()
	<-d.watchDone
	d.mu.Lock()
	d.over = true
	running := d.running
	if d.cancel != nil {
		d.cancel()
	}
	d.mu.Unlock()
	if running != nil {
		<-running
	}
	d.draining.Set(1)
	d.rateGauge.Set(float64(termRate(d.s.cfg.drain.rate, d.s.r.conns.Load())))
}

// apply acts on the mark's current value (present false: deleted).
func (d *drainCtl) apply(raw []byte, present bool) {
	if !present {
		d.undrain()
		return
	}
	m, err := discovery.ParseDrainMark(raw)
	if err != nil {
		d.log.Error("room: drain mark rejected", "key", d.key, "err", err)
		return
	}
	rate := d.s.cfg.drain.rate
	if m.Rate > 0 {
		rate = m.Rate
	}
	deadline := d.s.cfg.drain.deadline
	if m.DeadlineSec > 0 {
		deadline = time.Duration(m.DeadlineSec) * time.Second
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.over {
		return
	}
	d.rate.Store(int64(rate))
	d.rateGauge.Set(float64(rate))
	if d.running != nil {
		d.log.Info("room: drain rate changed", "rate", rate)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.running = cancel, make(chan struct{})
	go d.run(ctx, deadline, d.running)
}

// undrain cancels a running requested drain (the mark was deleted): the
// room is offered again and keeps the clients it still has.
func (d *drainCtl) undrain() {
	d.mu.Lock()
	running := d.running
	if d.over || running == nil {
		d.mu.Unlock()
		return
	}
	d.cancel()
	d.mu.Unlock()
	<-running
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.over {
		return
	}
	d.running, d.cancel = nil, nil
	d.s.r.draining.Store(false)
	d.s.reg.Update(func(in *discovery.Instance) { in.Draining = false })
	d.setHealthy(true)
	d.draining.Set(0)
	d.rateGauge.Set(0)
	d.log.Info("room: drain cancelled; serving again", "clients", d.s.r.conns.Load())
}

// run is one requested drain: stop being offered, redirect paced, wait
// for the clients to leave (or the deadline), then report done.
func (d *drainCtl) run(ctx context.Context, deadline time.Duration, done chan struct{}) {
	defer close(done)
	start := time.Now()
	// Flag first, then list: a connection opened after the list is
	// redirected by OnOpen.
	d.s.r.draining.Store(true)
	d.s.reg.Update(func(in *discovery.Instance) { in.Draining = true })
	d.setHealthy(false)
	d.draining.Set(1)
	d.log.Info("room: drain requested; redirecting clients paced", "rate", d.rate.Load(), "deadline", deadline, "clients", d.s.r.conns.Load())
	dctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	// Redirected clients ask the dispatcher where to go: it must not
	// offer this room any more by then.
	if !d.waitPublished(dctx) && ctx.Err() == nil {
		d.log.Warn("room: draining not seen in etcd in time; redirecting anyway", "wait", drainMarkTimeout)
	}
	told := d.s.r.redirectPaced(dctx, func() int { return int(d.rate.Load()) }, redirectReasonDrain, d.sent)
	for d.s.r.conns.Load() > 0 && sleepFor(dctx, drainPoll) {
	}
	d.mu.Lock()
	if ctx.Err() != nil {
		d.mu.Unlock()
		return
	}
	d.over = true
	d.mu.Unlock()
	left := d.s.r.conns.Load()
	if left > 0 {
		d.log.Warn("room: drain deadline passed; the clients left are redirected at once", "left", left, "deadline", deadline)
	}
	// The mark has done its job; left behind it would drain a room
	// started again under the same -instance.
	cctx, ccancel := context.WithTimeout(context.Background(), drainMarkTimeout)
	if _, err := d.cli.Delete(cctx, d.key); err != nil {
		d.log.Warn("room: drain mark not removed", "key", d.key, "err", err)
	}
	ccancel()
	d.log.Info("room: requested drain done", "redirected", told, "left", left, "took", time.Since(start))
	close(d.finished)
}

// watch keeps the drain state in step with the mark; when etcd is
// unreachable it keeps the state it has and reads the key again once etcd
// answers.
func (d *drainCtl) watch(ctx context.Context) {
	defer close(d.watchDone)
	for ctx.Err() == nil {
		lctx, lcancel := context.WithTimeout(ctx, drainMarkTimeout)
		rev, err := d.load(lctx)
		lcancel()
		if err == nil {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			for resp := range d.cli.Watch(wctx, d.key, clientv3.WithRev(rev+1)) {
				if resp.Err() != nil {
					break
				}
				for _, ev := range resp.Events {
					d.apply(ev.Kv.Value, ev.Type != clientv3.EventTypeDelete)
				}
			}
			cancel()
		} else if ctx.Err() == nil {
			d.log.Warn("room: drain mark not read; retrying", "err", err)
		}
		if !sleepFor(ctx, drainRelistEvery) {
			return
		}
	}
}

func (d *drainCtl) load(ctx context.Context) (int64, error) {
	resp, err := d.cli.Get(ctx, d.key)
	if err != nil {
		return 0, fmt.Errorf("room: get %s: %w", d.key, err)
	}
	if len(resp.Kvs) == 0 {
		d.apply(nil, false)
	} else {
		d.apply(resp.Kvs[0].Value, true)
	}
	return resp.Header.Revision, nil
}

// waitPublished waits until etcd holds this instance as draining (the
// registration writes in the background), up to drainMarkTimeout.
func (d *drainCtl) waitPublished(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, drainMarkTimeout)
	defer cancel()
	key := discovery.Key(d.s.cfg.common.Cluster, discovery.ServiceRoom, d.s.cfg.common.Instance)
	for {
		if resp, err := d.cli.Get(ctx, key); err == nil && len(resp.Kvs) == 1 {
			var in discovery.Instance
			if json.Unmarshal(resp.Kvs[0].Value, &in) == nil && in.Draining {
				return true
			}
		}
		if !sleepFor(ctx, drainPoll) {
			return false
		}
	}
}

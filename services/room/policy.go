package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/panjf2000/ants/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Login policies (docs/protocol.md §4.3): after a login of an app whose
// policy is not multi has landed at register, the room looks the user up
// and kicks the older sessions the policy rules out, with REPLACED —
// locally, or through Room.Kick on the room that holds them. The lookup
// and the kicks run on a bounded, non-blocking pool: logins come from
// event loops and register's flusher, which must not wait.

// policyWorkers bounds the policy checks running at once; a login beyond
// it is not checked (counted in pushgw_room_login_policy_failures_total
// {reason="shed"}), and the older session stays until its own end.
const policyWorkers = 256

// bindMetrics count BIND, UNBIND and login policy work.
type bindMetrics struct {
	binds         *prometheus.CounterVec
	unbinds       *prometheus.CounterVec
	bound         prometheus.Gauge
	policyKicks   *prometheus.CounterVec
	policyFailure *prometheus.CounterVec
	policyRetries prometheus.Counter
}

func newBindMetrics(reg prometheus.Registerer) bindMetrics {
	m := bindMetrics{
		binds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_binds_total", Help: "BIND requests by result (ok or the refusal's code name)."}, []string{"result"}),
		unbinds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_unbinds_total", Help: "Bindings ended, by why (client, closed, KICKED, REPLACED)."}, []string{"why"}),
		bound: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_room_bound_apps", Help: "Apps bound to connections besides their primary app."}),
		policyKicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_login_policy_kicks_total", Help: "Older sessions ended by a login policy, by where they were (local, remote)."}, []string{"where"}),
		policyFailure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_login_policy_failures_total", Help: "Login policy checks not done in full, by reason (shed, lookup, unknown_room, kick)."}, []string{"reason"}),
	}
	m.policyRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_room_login_policy_retries_total", Help: "Login policy lookups tried again after register failed them (policy_retry.go)."})
	reg.MustRegister(m.binds, m.unbinds, m.bound, m.policyKicks, m.policyFailure, m.policyRetries)
	return m
}

// multiApp is the room's view of app configs for BIND and login
// policies, and its connections to other rooms for kicking there.
type multiApp struct {
	appOf func(string) (appconfig.App, bool)
	// rooms resolves a room id from register to its gRPC address: only
	// rooms discovery knows are dialled, never an address read from Redis.
	rooms *discovery.Watcher
	pool  *grpcconn.Pool
	work  *ants.Pool
	m     bindMetrics
	// retrying counts policy checks waiting for a retry (policy_retry.go).
	retrying atomic.Int64
}

// newMultiApp starts the policy machinery; it stops with the room's life.
func newMultiApp(r *room, d serverDeps, cluster string) (*multiApp, error) {
	work, err := ants.NewPool(policyWorkers, ants.WithNonblocking(true))
	if err != nil {
		return nil, fmt.Errorf("room: login policy pool: %w", err)
	}
	appOf := d.appOf
	if appOf == nil {
		appOf = func(string) (appconfig.App, bool) { return appconfig.App{}, false }
	}
	ma := &multiApp{appOf: appOf, pool: grpcconn.NewPool(), work: work, m: newBindMetrics(d.registry)}
	if d.etcd != nil {
		ma.rooms = discovery.Watch(d.etcd, cluster, discovery.ServiceRoom, d.log)
	}
	go func() {
		<-r.life.Done()
		ma.work.Release()
		if ma.rooms != nil {
			ma.rooms.Close()
		}
		ma.pool.Close()
	}()
	return ma, nil
}

// sameVendor reports whether app b may be bound to a connection of app a.
func (ma *multiApp) sameVendor(a, b string) bool {
	ca, ok := ma.appOf(a)
	if !ok {
		return false
	}
	cb, ok := ma.appOf(b)
	return ok && appconfig.SameVendor(ca, cb)
}

// enforceLoginPolicy starts the policy check of a login (AUTH or BIND)
// whose session register now holds. It never blocks.
func (r *room) enforceLoginPolicy(s *session) {
	ma := r.multi
	if ma == nil || s.has(flagClosed) {
		return
	}
	a, ok := ma.appOf(s.key.app)
	if !ok || a.Policy() == appconfig.LoginMulti {
		return
	}
	policy := a.Policy()
	if err := ma.work.Submit(func() { r.applyLoginPolicy(s, policy, 0) }); err != nil {
		ma.m.policyFailure.WithLabelValues("shed").Inc()
		r.log.Warn("room: login policy check shed; pool full", "app", s.key.app, "conn", s.id)
	}
}

// applyLoginPolicy kicks the older sessions of s's user that policy rules
// out. It runs on the policy pool; try counts the earlier lookups that
// failed (policy_retry.go).
func (r *room) applyLoginPolicy(s *session, policy string, try int) {
	ma := r.multi
	ctx, cancel := context.WithTimeout(r.connCtx, grpcconn.DefaultCallTimeout)
	defer cancel()
	rep, err := r.register.Lookup(ctx, &internalpb.LookupSessionsRequest{
		Users: []*internalpb.UserKey{{App: s.key.app, User: s.key.user}},
	})
	if err != nil {
		r.m.peerErrors.WithLabelValues("Register.Lookup").Inc()
		r.retryLoginPolicy(s, policy, try, err)
		return
	}
	reason := fmt.Sprintf("a newer login of this user took over (login policy %s)", policy)
	remote := map[string][]*internalpb.Target{}
	for _, o := range supersededSessions(s.regSession(), rep.GetSessions(), policy) {
		t := &internalpb.Target{ConnId: o.GetConnId(), App: o.GetApp(), User: o.GetUser(), Device: o.GetDevice()}
		if o.GetRoomId() != r.instance {
			remote[o.GetRoomId()] = append(remote[o.GetRoomId()], t)
			continue
		}
		if old, ok := r.hub.Get(o.GetConnId()); ok && old != s && old.matches(t) && old.kick(protocol.CodeReplaced, reason) {
			ma.m.policyKicks.WithLabelValues("local").Inc()
		}
	}
	for roomID, targets := range remote {
		var addr string
		if ma.rooms != nil {
			if in, ok := ma.rooms.Get(roomID); ok {
				addr = in.Addr
			}
		}
		if addr == "" {
			// Gone: its sessions went with it.
			ma.m.policyFailure.WithLabelValues("unknown_room").Inc()
			continue
		}
		cc, err := ma.pool.Get(addr)
		if err == nil {
			var krep *internalpb.RoomKickReply
			krep, err = internalpb.NewRoomClient(cc).Kick(ctx, &internalpb.RoomKickRequest{
				Targets: targets, Reason: reason, Code: uint32(protocol.CodeReplaced),
			})
			for _, res := range krep.GetResults() {
				if res.GetCode() == internalpb.ResultCode_RESULT_CODE_OK {
					ma.m.policyKicks.WithLabelValues("remote").Inc()
				}
			}
		}
		if err != nil {
			r.m.peerErrors.WithLabelValues("Room.Kick").Inc()
			ma.m.policyFailure.WithLabelValues("kick").Inc()
			r.log.Warn("room: login policy kick failed", "room", roomID, "sessions", len(targets), "err", err)
		}
	}
}

// supersededSessions are the sessions of all that a new login me ends
// under policy: older ones (by login time, ties broken by room and
// connection id so two rooms agree), of the same platform class for
// one-per-platform.
func supersededSessions(me *internalpb.Session, all []*internalpb.Session, policy string) []*internalpb.Session {
	var out []*internalpb.Session
	for _, o := range all {
		if o.GetApp() != me.GetApp() || o.GetUser() != me.GetUser() || !loggedInBefore(o, me) {
			continue
		}
		switch policy {
		case appconfig.LoginOne:
		case appconfig.LoginOnePerPlatform:
			if appconfig.PlatformClass(o.GetPlatform()) != appconfig.PlatformClass(me.GetPlatform()) {
				continue
			}
		default:
			continue
		}
		out = append(out, o)
	}
	return out
}

// loggedInBefore orders sessions by login: a strict total order, so of two
// sessions each sees the same one as older (itself is never before itself).
func loggedInBefore(a, b *internalpb.Session) bool {
	if a.GetLoginMs() != b.GetLoginMs() {
		return a.GetLoginMs() < b.GetLoginMs()
	}
	if a.GetRoomId() != b.GetRoomId() {
		return a.GetRoomId() < b.GetRoomId()
	}
	return a.GetConnId() < b.GetConnId()
}

package main

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Flash reconnects. Mobile networks drop connections every few seconds; a
// client that comes back to the same room within -resume-window gets its
// session back without a register put or a saver pull. When an
// authenticated connection ends without the room having ended it (EOF,
// reset: not a KICK, an ERROR or a drain), its session is parked: a
// placeholder session takes the connection's place in the hub under the
// same connection id, so register's entry stays right (it is refreshed
// like any other and neither deleted nor put again), and pushes and
// broadcasts for it queue in the placeholder (bounded by -send-queue).
// The client reconnects with the AuthReply.resume_token it was given; the
// new connection adopts the parked state (session id, connection id,
// in-flight window, broadcast seen bits) and first gets what was queued.
//
// What the dead connection had written and not seen acked may never have
// reached the client: such a session resumes with a pull from saver (the
// messages are stored until acked), the only case a resume calls saver.
// A session parked past the window is ended like a closed one: its
// register entry deleted, what was queued left in saver for the next
// login's pull (it was counted delivered, so the sweep leaves it alone).

// Flash reconnect limits.
const (
	defaultResumeWindow = 30 * time.Second
	maxResumeWindow     = 10 * time.Minute
	// defaultMaxParked bounds the parked sessions of a room: each holds
	// its identity, its window's ids and at most -send-queue queued frames.
	defaultMaxParked = 10000
	maxMaxParked     = 1 << 20
	// resumeTokenBytes of a keyed HMAC make a token unguessable; it is
	// also bound to the (app, user, device) of a verified AUTH token.
	resumeTokenBytes = 16
	// resumeKeyBytes is the size of the room's random token key.
	resumeKeyBytes = 32
)

// flashConfig is the room's flash-reconnect flags; the zero value (unit
// tests' configs built without flags) parks nothing.
type flashConfig struct {
	window    time.Duration
	maxParked int
}

func (c *flashConfig) bind(fs *flag.FlagSet) {
	fs.DurationVar(&c.window, "resume-window", defaultResumeWindow, "how long a dropped client's session is kept for it to resume on reconnect (0: off)")
	fs.IntVar(&c.maxParked, "max-parked", defaultMaxParked, "most sessions kept for resumption at once; beyond it a dropped session ends at once")
}

func (c *flashConfig) validate() error {
	var errs []error
	if c.window < 0 || c.window > maxResumeWindow {
		errs = append(errs, fmt.Errorf("-resume-window %v: want 0..%v", c.window, maxResumeWindow))
	}
	if c.maxParked < 0 || c.maxParked > maxMaxParked {
		errs = append(errs, fmt.Errorf("-max-parked %d: want 0..%d", c.maxParked, maxMaxParked))
	}
	return errors.Join(errs...)
}

func (c *flashConfig) enabled() bool { return c.window > 0 && c.maxParked > 0 }

// flashMetrics count the parking lot.
type flashMetrics struct {
	parked prometheus.Gauge
	events *prometheus.CounterVec
}

func newFlashMetrics(reg prometheus.Registerer) *flashMetrics {
	m := &flashMetrics{
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_room_sessions_parked", Help: "Sessions of dropped connections kept for a flash reconnect (-resume-window)."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_session_resume_total",
			Help: "Flash-reconnect events: parked, resumed, expired (window passed), ended (kicked, replaced, drained or queue full while parked), full (not parked: -max-parked reached), miss (a resume token the room does not hold: full login)."},
			[]string{"event"}),
	}
	reg.MustRegister(m.parked, m.events)
	return m
}

// parkedSession is one entry of the parking lot.
type parkedSession struct {
	p     *session
	pc    *parkConn
	token string
	timer *time.Timer
}

// flash is the room's parking lot, by device.
type flash struct {
	r  *room
	mu sync.Mutex
	m  map[sessionKey]*parkedSession
	// key derives resume tokens from connection ids (tokenFor): a token
	// is computed when it is sent or checked instead of being kept in
	// every session (≈50 B per idle connection). Random per process, so
	// a token outlives neither the room nor its connection id.
	key [resumeKeyBytes]byte
}

func newFlash(r *room) *flash {
	f := &flash{r: r, m: map[sessionKey]*parkedSession{}}
	_, _ = rand.Read(f.key[:])
	return f
}

// len is the number of parked sessions.
func (f *flash) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// park keeps the session of s, whose connection just closed, for a
// resume. It runs in OnClose before s leaves the hub, and reports whether
// s was parked (its register entry is then kept).
func (f *flash) park(s *session) bool {
	r := f.r
	// Under f.mu: handOver decides under it too, so a connection closing
	// as a resume takes it over is either handed over or parked.
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.has(flagHandedOver) {
		return true // resumed on a new connection: the entry is its
	}
	if !r.cfg.flash.enabled() || r.draining.Load() || s.has(flagNoPark) || !s.hasToken || !s.isAuthed() {
		return false
	}
	mu := r.bc.seen.of(s)
	mu.Lock()
	bseq, bmask := s.bseq, s.bmask
	mu.Unlock()
	if bmask&catchingBit != 0 {
		return false // its catch-up did not finish: the next login runs one
	}
	pc := &parkConn{limit: r.cfg.sendQueue, addr: s.c.RemoteAddr()}
	p := &session{r: r, c: pc, id: s.regConnID(), key: s.key, platform: s.platform, loginMs: s.loginMs,
		bseq: bseq, bmask: bmask}
	s.pending.mu.Lock()
	acked, ackGen := s.pending.ackedLocked()
	p.pending.setAckedLocked(slices.Clone(acked), ackGen)
	p.pending.cursor = s.pending.cursor
	// Written to the dead connection but not acked, or pulled by a pull
	// still under way: the client may not have them, saver does.
	p.pending.behind = s.pending.behind || len(s.pending.inflightLocked()) > 0 || s.pending.pulling || s.pending.fails > 0
	s.pending.mu.Unlock()
	p.set(flagAuthed)
	p.set(flagReplied)
	pc.onClose = func() { f.end(p, "ended") }
	if len(f.m) >= r.cfg.flash.maxParked {
		r.m.flash.events.WithLabelValues("full").Inc()
		return false
	}
	if !r.hub.replace(s, p) {
		return false // replaced by a newer login of the device meanwhile
	}
	f.parkBound(s, p, pc)
	e := &parkedSession{p: p, pc: pc, token: f.tokenOf(s)}
	f.m[s.key] = e
	e.timer = time.AfterFunc(r.cfg.flash.window, func() {
		pc.mu.Lock()
		pc.expired = true
		pc.mu.Unlock()
		pc.CloseWith(nil)
	})
	r.m.flash.parked.Inc()
	r.m.flash.events.WithLabelValues("parked").Inc()
	return true
}

// end finishes parked session p: kicked, replaced, drained, its queue
// full, or its window passed. It runs once, from its parkConn's close.
func (f *flash) end(p *session, why string) {
	r := f.r
	p.set(flagClosed)
	if p.c.(*parkConn).wasExpired() {
		why = "expired"
	}
	f.mu.Lock()
	if e := f.m[p.key]; e != nil && e.p == p {
		delete(f.m, p.key)
		e.timer.Stop()
		r.m.flash.parked.Dec()
	}
	f.mu.Unlock() // p.bound was set under f.mu (park)
	r.hub.Remove(p)
	r.m.flash.events.WithLabelValues(why).Inc()
	f.endParkedBound(p, why)
	r.sessions.Delete(p.regSession())
	r.events.offline(p) // parked, the session was still online for callbacks
}

// resume gives s (authenticating as key with a resume token) the session
// of that token: parked, or still open here because the client noticed
// the drop before the room did (the old connection is then closed and
// handed over). It reports false when there is none: the login goes on as
// a full one.
func (f *flash) resume(s *session, key sessionKey, token string, seq uint32, lastBroadcast uint64) bool {
	r := f.r
	p, frames, bound, ok := f.claimParked(key, token)
	if !ok {
		p, bound, ok = f.handOver(key, token)
	}
	if !ok {
		r.m.flash.events.WithLabelValues("miss").Inc()
		return false
	}
	now := time.Now()
	s.key, s.regID, s.platform, s.loginMs = key, p.regConnID(), p.platform, p.loginMs
	s.hasToken, s.resumed = f.giveToken(), true
	limit := r.cfg.maxInflight()
	p.pending.mu.Lock()
	acked, ackGen := p.pending.ackedLocked()
	s.pending.setAckedLocked(slices.Clone(acked), ackGen)
	s.pending.cursor = p.pending.cursor
	s.pending.behind = p.pending.behind || p.pending.pulling || p.pending.fails > 0
	queued := 0
	for _, qf := range frames {
		if qf.id != 0 && len(s.pending.inflightLocked()) < limit {
			s.pending.addInflightLocked(qf.id)
			queued++
		}
	}
	// In the window and not queued: written to a dead connection, or
	// admitted by a push that raced the take (center retries that one
	// here). The client may lack them; saver has them.
	if len(p.pending.inflightLocked()) > queued {
		s.pending.behind = true
	}
	p.pending.mu.Unlock()
	sm := r.bc.seen.of(s)
	sm.Lock()
	s.bseq, s.bmask = p.bseq, p.bmask&^catchingBit
	sm.Unlock()
	// Broadcasts written to the dead connection count as given, but the
	// client says it has less (the fault suite lost one to 27 clients
	// whose reconnect storm raced it): restart the seen bits at the
	// client's seq, keep the queued broadcasts as given (they are sent
	// below), and catch up from saver like a login.
	catchUp := lastBroadcast < p.bseq
	if catchUp {
		r.bc.seen.login(s, lastBroadcast, 0)
		sm.Lock()
		for _, qf := range frames {
			if bs := broadcastSeqOf(qf.frame); bs != 0 {
				markSeen(&s.bseq, &s.bmask, bs)
			}
		}
		sm.Unlock()
	}

	// Before authed: AUTH_REPLY names the resumed bindings (s.bound).
	nbs := f.prepareBound(s, bound)
	s.authSeq = seq
	r.hub.adopt(s, p)
	s.set(flagAuthed)
	r.preAuth.Add(-1)
	s.timer.Touch(r.cfg.liveTimeout())
	if old := r.hub.Bind(s); old != nil && old != s && old != p {
		old.kick(protocol.CodeReplaced, "the same device logged in again")
	}
	r.m.auths.WithLabelValues("ok").Inc()
	r.m.flash.events.WithLabelValues("resumed").Inc()
	s.reply(now)
	for _, qf := range frames {
		if err := s.c.Send(qf.frame); err != nil {
			break // closing already; what was queued is stored
		}
		r.m.frameOut(protocol.OpPush)
	}
	f.adoptBound(s, nbs, bound)
	if s.pending.due(limit) {
		r.requestPull(s)
	}
	if catchUp {
		r.m.flash.events.WithLabelValues("catch_up").Inc()
		r.bc.startCatchUp(s, lastBroadcast, now.UnixMilli())
	}
	return true
}

// claimParked takes the parked session of key if token is its own, with
// its parked bindings (resume_bound.go). p's seen bits are copied to
// p.bseq/bmask as they were before the take.
func (f *flash) claimParked(key sessionKey, token string) (*session, []queuedFrame, []boundResume, bool) {
	r := f.r
	f.mu.Lock()
	e := f.m[key]
	if e == nil || !hmac.Equal([]byte(e.token), []byte(token)) {
		f.mu.Unlock()
		return nil, nil, nil, false
	}
	delete(f.m, key)
	e.timer.Stop()
	r.m.flash.parked.Dec()
	f.mu.Unlock()
	// The seen bits are read before the queue is taken: a broadcast
	// claimed in between is queued and sent, and at worst comes again
	// later (the SDK drops it by id); read after, a broadcast claimed by
	// the placeholder after the take would be refused by its closed queue
	// and counted as given.
	p := e.p
	pm := r.bc.seen.of(p)
	pm.Lock()
	bseq, bmask := p.bseq, p.bmask
	pm.Unlock()
	frames, ok := e.pc.take()
	if !ok {
		// Ended in the same instant (kicked, expired): its end queued
		// the register delete.
		return nil, nil, nil, false
	}
	p.set(flagClosed)
	bound := f.claimBound(p)
	snap := &session{r: r, id: p.id, key: p.key, platform: p.platform, loginMs: p.loginMs, bseq: bseq, bmask: bmask}
	p.pending.mu.Lock()
	acked, ackGen := p.pending.ackedLocked()
	snap.pending.setAckedLocked(acked, ackGen)
	snap.pending.cursor, snap.pending.behind = p.pending.cursor, p.pending.behind
	for _, id := range p.pending.inflightLocked() {
		snap.pending.addInflightLocked(id)
	}
	p.pending.mu.Unlock()
	return snap, frames, bound, true
}

// handOver takes the session of key from a connection still open here
// whose token it is: the client saw its connection die before the room
// did. That connection is closed without a register delete, and every
// message it had in flight is pulled again (the client may lack it). Its
// bound apps come along (resume_bound.go), as from a parked connection.
func (f *flash) handOver(key sessionKey, token string) (*session, []boundResume, bool) {
	r := f.r
	if !r.cfg.flash.enabled() {
		return nil, nil, false
	}
	f.mu.Lock()
	cur := r.hub.current(key)
	if cur == nil || !cur.isAuthed() || cur.has(flagClosed) || !cur.hasToken ||
		!hmac.Equal([]byte(f.tokenOf(cur)), []byte(token)) ||
		!cur.setOnce(flagHandedOver) {
		f.mu.Unlock()
		return nil, nil, false
	}
	f.mu.Unlock()
	apps := takeBindings(cur)
	cur.c.Abort() // later sends to it fail; center retries them here
	mu := r.bc.seen.of(cur)
	mu.Lock()
	bseq, bmask := cur.bseq, cur.bmask
	mu.Unlock()
	snap := &session{r: r, id: cur.indexID(), key: cur.key, platform: cur.platform, loginMs: cur.loginMs, bseq: bseq, bmask: bmask}
	cur.pending.mu.Lock()
	acked, ackGen := cur.pending.ackedLocked()
	snap.pending.setAckedLocked(slices.Clone(acked), ackGen)
	snap.pending.cursor = cur.pending.cursor
	snap.pending.behind = cur.pending.behind || len(cur.pending.inflightLocked()) > 0 || cur.pending.pulling || cur.pending.fails > 0
	cur.pending.mu.Unlock()
	if bmask&catchingBit != 0 {
		// Its catch-up was under way: bits above the reported seq may be
		// missing. Live broadcasts resume; the catch-up itself is lost
		// for this connection (a rare double fault: drop during login).
		snap.bmask &^= catchingBit
	}
	// The old connection's OnClose finds it handed over: no park, no
	// register delete, and its hub entries already point here.
	r.hub.replaceLive(cur, snap)
	return snap, f.handOverBound(cur, snap, apps), true
}

// queuedFrame is a frame queued for a parked session; id is its QoS 1
// message id (0: QoS 0 or not a push).
type queuedFrame struct {
	frame []byte
	id    uint64
}

// parkConn stands in for the connection of a parked session: it queues
// what is sent until the session resumes or ends.
type parkConn struct {
	limit   int
	addr    netip.AddrPort
	onClose func()

	mu      sync.Mutex
	q       []queuedFrame
	closed  bool
	expired bool
}

func (c *parkConn) Send(frame []byte) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errClosed
	}
	if len(c.q) >= c.limit {
		c.mu.Unlock()
		// Like a slow consumer: the session ends, its messages stay
		// stored for the next login.
		c.CloseWith(nil)
		return errQueueFull
	}
	c.q = append(c.q, queuedFrame{frame: frame, id: qos1PushID(frame)})
	c.mu.Unlock()
	return nil
}

func (c *parkConn) CloseWith([]byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.q = nil
	c.mu.Unlock()
	c.onClose()
	return true
}

func (c *parkConn) Abort()                     { c.CloseWith(nil) }
func (c *parkConn) RemoteAddr() netip.AddrPort { return c.addr }

// take closes the placeholder for a resume and returns its queue; false
// when it had closed already.
func (c *parkConn) take() ([]queuedFrame, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	c.closed = true
	q := c.q
	c.q = nil
	return q, true
}

func (c *parkConn) wasExpired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expired
}

// broadcastSeqOf returns the broadcast seq of an encoded PUSH frame, 0 for
// anything else.
func broadcastSeqOf(frame []byte) uint64 {
	f, _, err := protocol.Decode(frame, protocol.MaxBodySizeLimit)
	if err != nil || f.Op != protocol.OpPush {
		return 0
	}
	var m clientpb.Push
	if proto.Unmarshal(f.Body, &m) != nil {
		return 0
	}
	return m.GetBroadcastSeq()
}

// qos1PushID returns the message id of an encoded PUSH frame of a QoS 1
// message to one user (what the in-flight window holds), 0 for anything
// else (QoS 0, broadcasts, other ops).
func qos1PushID(frame []byte) uint64 {
	f, _, err := protocol.Decode(frame, protocol.MaxBodySizeLimit)
	if err != nil || f.Op != protocol.OpPush {
		return 0
	}
	var m clientpb.Push
	if proto.Unmarshal(f.Body, &m) != nil || m.GetQos() != 1 || m.GetBroadcastSeq() != 0 {
		return 0
	}
	return m.GetId()
}

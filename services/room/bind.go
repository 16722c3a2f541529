package main

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/bcseq"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Several apps on one connection (docs/protocol.md §4.2). A BIND adds an
// app of the connection's vendor: the room gives it a session of its own —
// its own connection id, register record, in-flight window and pending
// pulls — that writes to the same connection. Center routes to it like to
// any session (register holds (app, user, device) → this room and that
// id); the hub indexes it by id and device like a connection, so pushes,
// kicks, broadcasts and refreshes find it without knowing it is bound.

// bindSet is the apps bound to one connection besides its primary app.
type bindSet struct {
	mu sync.Mutex
	// apps are the bound sessions by app; nil once the connection closed.
	apps   map[string]*session
	closed bool
}

// bindLink is what a bound app's session knows of its connection.
type bindLink struct {
	primary *session
	set     *bindSet
	// seq is the BIND's seq, echoed by BIND_REPLY.
	seq uint32
	// mu orders this app's writes against its unbinding: frames are
	// queued under the read lock, gone is set under the write lock, so no
	// PUSH of the app follows the UNBIND_REPLY or server UNBIND.
	mu   sync.RWMutex
	gone bool
	// replyMu makes BIND_REPLY go out once, before any other frame of the app.
	replyMu sync.Mutex
}

// bindRefusal answers a BIND with a non-zero code; the connection stays.
func (r *room) bindRefusal(s *session, seq uint32, code protocol.Code, app, msg string) {
	if r.multi != nil {
		r.multi.m.binds.WithLabelValues(code.String()).Inc()
	}
	_ = s.sendMsg(protocol.OpBindReply, seq, &clientpb.BindReply{Code: uint32(code), Message: msg, App: app})
}

// handleBind adds the app of a BIND's token to s's connection. It runs
// on the connection's reader and never blocks: register learns of the new
// session through the batched put, like a login.
func (r *room) handleBind(s *session, f protocol.Frame) {
	var b clientpb.Bind
	if err := proto.Unmarshal(f.Body, &b); err != nil {
		s.fail(f.Seq, protocol.CodeBadBody, "BIND body is not a valid Bind message")
		return
	}
	if r.multi == nil {
		r.bindRefusal(s, f.Seq, protocol.CodeUnavailable, "", "this room cannot bind apps")
		return
	}
	now := time.Now()
	claims, err := token.Verify(b.GetToken(), r.secretOf, now)
	if err != nil {
		// The error text names the app at most, never the token.
		r.bindRefusal(s, f.Seq, authCode(err), "", err.Error())
		return
	}
	app := claims.App
	if bs := s.boundSet().get(app); bs != nil && r.bindAgain(s, bs, claims.User, claims.Device, f.Seq) {
		return
	}
	if app == s.key.app || s.boundSet().get(app) != nil {
		r.bindRefusal(s, f.Seq, protocol.CodeAlreadyBound, app, fmt.Sprintf("app %s is already on this connection", app))
		return
	}
	if !r.multi.sameVendor(s.key.app, app) {
		r.bindRefusal(s, f.Seq, protocol.CodeBindVendor, app,
			fmt.Sprintf("app %s is not of the vendor of app %s", app, s.key.app))
		return
	}
	if s.boundSet().len() >= protocol.MaxBoundApps {
		r.bindRefusal(s, f.Seq, protocol.CodeBindLimit, app,
			fmt.Sprintf("this connection already carries %d bound apps", protocol.MaxBoundApps))
		return
	}
	device := claims.Device
	if device == "" {
		device = s.key.device
	} else if device != s.key.device {
		r.bindRefusal(s, f.Seq, protocol.CodeTokenInvalid, app, "the token names another device than this connection's")
		return
	}
	if s.boundSet() == nil {
		s.binding.Store(&bindState{bound: &bindSet{apps: make(map[string]*session, 1)}})
	}
	id := r.nextID.Add(1)
	bs := &session{r: r, c: s.c, id: id}
	bs.binding.Store(&bindState{bind: &bindLink{primary: s, set: s.boundSet(), seq: f.Seq}})
	bs.key = sessionKey{app: r.apps.intern(app), user: claims.User, device: device}
	bs.platform = s.platform
	bs.loginMs = now.UnixMilli()
	// As at AUTH: before authed, so a live broadcast sees the catch-up pending.
	r.bc.seen.login(bs, b.GetLastBroadcastSeq(), b.GetBroadcastGaps())
	bs.set(flagAuthed)
	r.events.online(bs)
	s.boundSet().add(bs)
	r.hub.AddConn(bs)
	if old := r.hub.Bind(bs); old != nil && old != bs {
		old.kick(protocol.CodeReplaced, "the same device logged in again")
	}
	r.multi.m.binds.WithLabelValues("ok").Inc()
	r.multi.m.bound.Inc()
	// BIND_REPLY waits for register like AUTH_REPLY (auth.go).
	r.sessions.PutThen(bs.regSession(), func() {
		bs.replyBind()
		r.pullPending(bs)
		r.enforceLoginPolicy(bs)
	})
	r.later.After(r.cfg.authReplyWait, bs.replyBind)
	r.bc.startCatchUp(bs, bcseq.After(b.GetLastBroadcastSeq(), b.GetBroadcastGaps()), now.UnixMilli())
}

// handleUnbind ends a binding at the client's request.
func (r *room) handleUnbind(s *session, f protocol.Frame) {
	var u clientpb.Unbind
	if err := proto.Unmarshal(f.Body, &u); err != nil {
		s.fail(f.Seq, protocol.CodeBadBody, "UNBIND body is not a valid Unbind message")
		return
	}
	app := u.GetApp()
	bs := s.boundSet().get(app)
	if bs == nil || !r.unbind(bs, "client") {
		_ = s.sendMsg(protocol.OpUnbindReply, f.Seq, &clientpb.UnbindReply{
			Code: uint32(protocol.CodeNotBound), Message: fmt.Sprintf("app %q is not bound on this connection", app), App: app,
		})
		return
	}
	_ = s.sendMsg(protocol.OpUnbindReply, f.Seq, &clientpb.UnbindReply{App: app})
}

// kickBound ends a bound app's session without closing its connection:
// the client gets UNBIND with the code and reason. It reports whether this
// call ended it.
func (r *room) kickBound(bs *session, code protocol.Code, reason string) bool {
	bs.setCloseReason(closeReasonOf(code)) // first reason wins: set before the unbind reports it
	if !r.unbind(bs, code.String()) {
		return false
	}
	frame, err := protocol.AppendMessage(nil, protocol.OpUnbind, 0, &clientpb.Unbind{
		App: bs.key.app, Code: uint32(code), Reason: reason,
	})
	if err == nil {
		_ = bs.bindLink().primary.send(protocol.OpUnbind, frame)
	}
	return true
}

// unbind takes bs off its connection: nothing more is written for it, and
// register forgets it. False when it was already off.
func (r *room) unbind(bs *session, why string) bool {
	l := bs.bindLink()
	l.set.mu.Lock()
	if l.set.apps[bs.key.app] != bs {
		l.set.mu.Unlock()
		return false
	}
	delete(l.set.apps, bs.key.app)
	l.set.mu.Unlock()
	// The client waits for BIND_REPLY: it goes before the end of the binding.
	bs.replyBind()
	r.dropBound(bs)
	r.multi.m.unbinds.WithLabelValues(why).Inc()
	return true
}

// closeBound ends every binding of a connection that closed.
func (r *room) closeBound(s *session) {
	set := s.boundSet()
	if set == nil {
		return
	}
	for _, bs := range set.takeAll() {
		bs.setCloseReason(closeReason(s.closeWhy.Load())) // the connection's reason is its apps'
		r.dropBound(bs)
		r.multi.m.unbinds.WithLabelValues("closed").Inc()
	}
}

// dropBound stops writes for bs and removes it from the hub and register.
func (r *room) dropBound(bs *session) {
	l := bs.bindLink()
	l.mu.Lock()
	l.gone = true
	l.mu.Unlock()
	bs.set(flagClosed)
	r.hub.Remove(bs)
	r.sessions.Delete(bs.regSession())
	r.events.offline(bs) // a binding is a session of its own for callbacks too
	r.multi.m.bound.Dec()
}

// sendBound queues a frame of a bound app: after its BIND_REPLY, and not
// once it is unbound.
func (s *session) sendBound(op protocol.Op, frame []byte) error {
	l := s.bindLink()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.gone {
		return errClosed
	}
	if op != protocol.OpBindReply {
		s.replyBind()
	}
	return s.writeCounted(op, frame)
}

// replyBind queues BIND_REPLY once, whoever comes first: the put landing,
// the wait running out, the first frame for the app, or its unbinding.
func (s *session) replyBind() {
	if s.has(flagReplied) {
		return
	}
	l := s.bindLink()
	l.replyMu.Lock()
	defer l.replyMu.Unlock()
	if s.has(flagReplied) {
		return
	}
	frame, err := protocol.AppendMessage(nil, protocol.OpBindReply, l.seq, &clientpb.BindReply{App: s.key.app, SessionId: s.sessionID()})
	if err == nil {
		_ = s.writeCounted(protocol.OpBindReply, frame)
	}
	s.set(flagReplied)
}

// writeCounted queues a frame on the connection and keeps the books, as
// session.send does.
func (s *session) writeCounted(op protocol.Op, frame []byte) error {
	err := s.c.Send(frame)
	switch err {
	case nil:
		s.r.m.frameOut(op)
	case errQueueFull:
		s.r.m.slowConsumer.Inc()
		s.r.m.closes.WithLabelValues(protocol.CodeSlowConsumer.String()).Inc()
	}
	return err
}

// ackBound hands the acked ids in flight on s's bound apps to their
// sessions (window, pull, report to saver under the bound app's key) and
// returns the others, which belong to the primary app.
func (r *room) ackBound(s *session, ids []uint64) []uint64 {
	bound := s.boundSet().list()
	if len(bound) == 0 || len(ids) == 0 {
		return ids
	}
	rest := make([]uint64, 0, len(ids))
	mine := make([][]uint64, len(bound))
	for _, id := range ids {
		owner := -1
		for i, bs := range bound {
			if bs.pending.holds(id) {
				owner = i
				break
			}
		}
		if owner < 0 {
			rest = append(rest, id)
			continue
		}
		mine[owner] = append(mine[owner], id)
	}
	limit, gen := r.cfg.maxInflight(), r.reports.flushes.Load()
	for i, bs := range bound {
		if len(mine[i]) == 0 {
			continue
		}
		for _, id := range mine[i] {
			r.reports.Acked(bs.key.app, bs.key.user, id)
		}
		if bs.pending.ack(mine[i], limit, gen) {
			r.pullPending(bs)
		}
	}
	return rest
}

// holds reports whether id is in the in-flight window.
func (p *pendingState) holds(id uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.inflightLocked(), id)
}

func (b *bindSet) get(app string) *session {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.apps[app]
}

// takeAll empties the set for good and returns what it held: the
// connection ended, and a BIND racing the end finds the set closed.
func (b *bindSet) takeAll() map[string]*session {
	b.mu.Lock()
	defer b.mu.Unlock()
	apps := b.apps
	b.apps, b.closed = nil, true
	return apps
}

func (b *bindSet) len() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.apps)
}

func (b *bindSet) add(bs *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.apps[bs.key.app] = bs
	}
}

// list returns the bound sessions (nil when none).
func (b *bindSet) list() []*session {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.apps) == 0 {
		return nil
	}
	out := make([]*session, 0, len(b.apps))
	for _, bs := range b.apps {
		out = append(out, bs)
	}
	return out
}

// bindAgain answers a BIND of an app already bound on s to the same user
// and device: an older client re-binds after every reconnect, including
// one that resumed its bindings (AuthReply.resumed_apps). It is told it is
// bound (code 0, the binding's session id) and nothing changes. It
// reports false for a token of another user or device (ALREADY_BOUND).
func (r *room) bindAgain(s *session, bs *session, user, device string, seq uint32) bool {
	if bs.key.user != user || (device != "" && device != bs.key.device) {
		return false
	}
	r.multi.m.binds.WithLabelValues("again").Inc()
	_ = s.sendMsg(protocol.OpBindReply, seq, &clientpb.BindReply{App: bs.key.app, SessionId: bs.sessionID()})
	return true
}

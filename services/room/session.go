package main

import (
	"strconv"
	"sync/atomic"
	"time"
	"unique"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// session is the room's state for one connection. Identity fields are
// written once by the connection's reader before authed is set, and only
// read by other goroutines after they observe authed.
//
// One exists per open connection, so it holds only what cannot be derived:
// what register stores (internalpb.Session) and the session id are built
// when needed from the key, the connection id and the login time; the app
// name is the room's interned copy and the platform a unique handle, so
// neither costs a string per connection.
type session struct {
	// Field order packs the struct into the 224-byte size class (8-byte
	// fields, then the 4-byte atomics, then bools): one exists per open
	// connection. TestSessionSizeClass keeps it there.
	r     *room
	c     conn
	id    uint64
	timer wheelTimer[*session]
	// limit is the inbound frame budget; only the reader touches it.
	limit frameLimiter
	key   sessionKey
	// platform is the client's free-form platform (empty when it gave none
	// or an invalid one); loginMs the AUTH's wall-clock time. Immutable once
	// authed, like key.
	platform unique.Handle[string]
	loginMs  int64
	// regID is, for a session resumed after a flash reconnect, the
	// connection id register knows it by (the resumed one's); 0 otherwise
	// (hub_flash.go). Written before authed.
	regID uint64
	// pending pages through what was stored while the user was away.
	pending pendingState
	// bseq and bmask record the broadcasts given to this connection
	// (broadcast_seen.go); guarded by room.bc.seen.
	bseq, bmask uint64
	// binding is the BIND state (bind.go), nil on a connection that never
	// bound an app: see bindState.
	binding atomic.Pointer[bindState]

	// flags holds the session's one-way flags (sessionFlag): one word
	// rather than an atomic.Bool (4 bytes) each keeps session in its size
	// class.
	flags   atomic.Uint32
	authSeq uint32 // the AUTH's seq, which AUTH_REPLY echoes
	// closeWhy is the closeReason of an offline event (events.go).
	closeWhy atomic.Uint32
	// hasToken is set when AUTH_REPLY carries a resume token for a flash
	// reconnect (derived from id: resume_token.go); resumed when this
	// connection took over a parked session (resume.go). Both are written
	// before authed.
	hasToken bool
	resumed  bool
}

// sessionFlag is one of a session's flags. Each is only ever set, never
// cleared, by any goroutine.
type sessionFlag uint32

const (
	// flagAuthed: AUTH succeeded; identity fields are written before it.
	flagAuthed sessionFlag = 1 << iota
	// flagClosed: the connection is gone, for timers still holding s.
	flagClosed
	// flagReplied: AUTH_REPLY is queued.
	flagReplied
	// flagNoPark: the room ends the connection itself (KICK, ERROR), so
	// its session is not kept.
	flagNoPark
	// flagHandedOver: a resuming connection took this open one's session
	// over (resume.go).
	flagHandedOver
)

// has reports whether f is set.
func (s *session) has(f sessionFlag) bool { return sessionFlag(s.flags.Load())&f != 0 }

// set sets f.
func (s *session) set(f sessionFlag) { s.flags.Or(uint32(f)) }

// setOnce sets f and reports whether this call set it.
func (s *session) setOnce(f sessionFlag) bool { return sessionFlag(s.flags.Or(uint32(f)))&f == 0 }

// bindState is what BIND adds to a session, kept behind one pointer so a
// connection that never binds (nearly all) pays 8 bytes for it. A primary
// connection's state holds bound, the apps BIND added (set by its reader
// at the first BIND; only the reader and OnClose use it); a bound app's
// session holds bind, the link to its connection (set before the session
// is shared). Neither changes once published.
type bindState struct {
	bound *bindSet
	bind  *bindLink
}

// boundSet is the set of apps bound on s's connection, nil for none.
func (s *session) boundSet() *bindSet {
	if b := s.binding.Load(); b != nil {
		return b.bound
	}
	return nil
}

// bindLink is the link of a bound app's session to its connection, nil
// for a connection's own session.
func (s *session) bindLink() *bindLink {
	if b := s.binding.Load(); b != nil {
		return b.bind
	}
	return nil
}

func (s *session) isAuthed() bool { return s.has(flagAuthed) }

// sessionID is the id AUTH_REPLY gives the client and uplinks carry:
// "<instance>:<connection id>".
func (s *session) sessionID() string {
	return s.r.instance + ":" + strconv.FormatUint(s.regConnID(), 10)
}

// regSession builds what register stores for this authenticated session.
// It is built for each call to register (login, refresh, close) rather
// than kept: a kept copy cost ≈200 B per idle connection.
func (s *session) regSession() *internalpb.Session {
	return &internalpb.Session{
		App: s.key.app, User: s.key.user, Device: s.key.device,
		RoomId: s.r.instance, RoomAddr: s.r.cfg.grpc, ConnId: s.regConnID(),
		LoginMs: s.loginMs, ClientIp: clientIP(s.c.RemoteAddr()), Platform: s.platformName(),
	}
}

// platformName is the platform given at AUTH, "" for none.
func (s *session) platformName() string {
	if s.platform == (unique.Handle[string]{}) {
		return ""
	}
	return s.platform.Value()
}

// send queues an encoded frame and keeps the books. Any frame for an
// authenticated session goes after its AUTH_REPLY: a push can only reach
// it once register holds it, and that is when AUTH_REPLY is due anyway.
func (s *session) send(op protocol.Op, frame []byte) error {
	if s.bindLink() != nil {
		return s.sendBound(op, frame)
	}
	if op != protocol.OpAuthReply && !s.has(flagReplied) && s.isAuthed() {
		s.reply(time.Time{})
	}
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

// sendMsg encodes msg as an op frame and queues it.
func (s *session) sendMsg(op protocol.Op, seq uint32, msg proto.Message) error {
	frame, err := protocol.AppendMessage(nil, op, seq, msg)
	if err != nil {
		return err
	}
	return s.send(op, frame)
}

// fail sends ERROR code and closes the connection.
func (s *session) fail(seq uint32, code protocol.Code, msg string) {
	s.set(flagNoPark)
	if s.c.CloseWith(protocol.ErrorFrame(nil, seq, code, msg)) {
		s.r.m.frameOut(protocol.OpError)
		s.r.m.closes.WithLabelValues(code.String()).Inc()
	}
}

// kick sends KICK code and closes the connection; false when it was
// already closing.
func (s *session) kick(code protocol.Code, reason string) bool {
	if s.bindLink() != nil {
		return s.r.kickBound(s, code, reason) // the connection's other apps stay
	}
	s.set(flagNoPark)
	frame, _ := protocol.AppendMessage(nil, protocol.OpKick, 0, &clientpb.Kick{Code: uint32(code), Reason: reason})
	s.setCloseReason(closeReasonOf(code))
	if !s.c.CloseWith(frame) {
		return false
	}
	s.r.m.frameOut(protocol.OpKick)
	s.r.m.closes.WithLabelValues(code.String()).Inc()
	return true
}

// matches reports whether s is the authenticated session a center target
// names.
func (s *session) matches(t *internalpb.Target) bool {
	return s.isAuthed() && s.key.app == t.GetApp() && s.key.user == t.GetUser() &&
		(t.GetDevice() == "" || t.GetDevice() == s.key.device)
}

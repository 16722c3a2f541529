package main

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unique"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/bcseq"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

const (
	// defaultDevice names the device of a client that gives none.
	defaultDevice = "default"
	// maxPlatformLen bounds the free-form platform kept with a session.
	maxPlatformLen = 64
	// maxAuthBody bounds a frame body before authentication. The only frame
	// accepted then is AUTH: a token of at most token.MaxTokenLen bytes plus
	// a device id, a platform and an SDK version, which fit with room to
	// spare. Without it a stranger's header announcing -max-frame bytes
	// would make the room allocate that much before knowing who it is.
	maxAuthBody = 8 << 10
)

// authCode maps a token verification error to its wire code.
func authCode(err error) protocol.Code {
	switch {
	case errors.Is(err, token.ErrExpired):
		return protocol.CodeTokenExpired
	case errors.Is(err, token.ErrUnknownApp):
		return protocol.CodeAppUnknown
	default:
		return protocol.CodeTokenInvalid
	}
}

// handleAuth verifies the first frame, binds the session and starts
// delivering. It runs on the connection's reader.
func (r *room) handleAuth(s *session, f protocol.Frame) {
	a, _ := r.authMsgs.Get().(*clientpb.Auth)
	if a == nil {
		a = new(clientpb.Auth)
	}
	// Unmarshal resets a first; nothing keeps a past this call (its
	// strings and slices are fresh each time and outlive the reset).
	defer r.authMsgs.Put(a)
	if err := proto.Unmarshal(f.Body, a); err != nil {
		r.m.auths.WithLabelValues(protocol.CodeBadBody.String()).Inc()
		s.fail(f.Seq, protocol.CodeBadBody, "AUTH body is not a valid Auth message")
		return
	}
	claims, err := token.Verify(a.GetToken(), r.secretOf, time.Now())
	if err != nil {
		code := authCode(err)
		r.m.auths.WithLabelValues(code.String()).Inc()
		// The error text names the app at most, never the token.
		s.fail(f.Seq, code, err.Error())
		return
	}
	device := claims.Device
	if device == "" {
		device = a.GetDevice()
	}
	if device == "" {
		device = defaultDevice
	}
	if len(device) > token.MaxDeviceLen || !utf8.ValidString(device) {
		r.m.auths.WithLabelValues(protocol.CodeBadBody.String()).Inc()
		s.fail(f.Seq, protocol.CodeBadBody, "device must be valid UTF-8 of at most 128 bytes")
		return
	}
	platform := a.GetPlatform()
	if len(platform) > maxPlatformLen || !utf8.ValidString(platform) {
		platform = ""
	}

	key := sessionKey{app: r.apps.intern(claims.App), user: claims.User, device: device}
	if tok := a.GetResumeToken(); tok != "" && r.flash.resume(s, key, tok, f.Seq, a.GetLastBroadcastSeq()) {
		return // flash reconnect: no put, no pull, no catch-up (resume.go)
	}
	if a.GetResumeOnly() {
		// Nothing registered: this AUTH may have waited in the socket while
		// the room hung, and its client logged in elsewhere meanwhile.
		r.m.auths.WithLabelValues(protocol.CodeResumeMiss.String()).Inc()
		s.fail(f.Seq, protocol.CodeResumeMiss, "no session to resume here; log in without resume_only")
		return
	}
	now := time.Now()
	s.key = key
	s.hasToken = r.flash.giveToken()
	if platform != "" {
		s.platform = unique.Make(platform)
	}
	s.loginMs = now.UnixMilli()
	// Before authed: a live broadcast must see the catch-up pending.
	r.bc.seen.login(s, a.GetLastBroadcastSeq(), a.GetBroadcastGaps())
	s.authSeq = f.Seq
	s.set(flagAuthed)
	r.preAuth.Add(-1)
	s.timer.Touch(r.cfg.liveTimeout())

	if old := r.hub.Bind(s); old != nil && old != s {
		old.kick(protocol.CodeReplaced, "the same device logged in again")
	}
	r.m.auths.WithLabelValues("ok").Inc()
	r.events.online(s)
	// AUTH_REPLY waits until register holds the session, so a push sent
	// right after it finds the session; a register that does not answer in
	// -auth-reply-wait delays nobody (the put lands when it comes back).
	// The pending pull follows the put; a put still under way after the
	// wait (register slow or down: its attempts can take seconds) pulls at
	// once as well, and again when the put lands or is given up.
	var putDone atomic.Bool
	r.sessions.PutThen(s.regSession(), func() {
		putDone.Store(true)
		s.reply(now)
		r.requestPull(s)
		r.enforceLoginPolicy(s)
	})
	r.later.After(r.cfg.authReplyWait, func() {
		s.reply(now)
		if !putDone.Load() && !s.has(flagClosed) {
			r.requestPull(s)
		}
	})
	// Catch-up frames go through s.send, which queues AUTH_REPLY first. It
	// reads from below the lowest seq the client reported missing.
	r.bc.startCatchUp(s, bcseq.After(a.GetLastBroadcastSeq(), a.GetBroadcastGaps()), now.UnixMilli())
}

// reply queues AUTH_REPLY once, whoever comes first: the put landing, the
// wait running out, or a frame for the session. since is when AUTH
// arrived (zero: not measured).
func (s *session) reply(since time.Time) {
	if s.has(flagReplied) {
		return
	}
	s.pending.mu.Lock()
	defer s.pending.mu.Unlock()
	if s.has(flagReplied) {
		return
	}
	r := s.r
	now := time.Now()
	f := authReplyFields{
		instance:    r.instance,
		connID:      s.regConnID(),
		heartbeat:   uint32(r.cfg.heartbeat / time.Second),
		serverMs:    now.UnixMilli(),
		maxInflight: uint32(r.cfg.maxInflight()),
		resumed:     s.resumed,
		resumedApps: s.resumedApps(),
	}
	var tok [2 * resumeTokenBytes]byte
	if s.hasToken { // as flash.tokenOf, without the string
		f.token = r.flash.appendToken(tok[:0], s.id)
	}
	if frame, ok := appendAuthReply(nil, s.authSeq, f); ok {
		_ = s.send(protocol.OpAuthReply, frame)
	}
	s.set(flagReplied)
	if !since.IsZero() {
		r.m.authReplyWait.Observe(now.Sub(since).Seconds())
	}
}

// clientIP is the address of a session without its port ("" if unknown).
func clientIP(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.Addr().String()
}

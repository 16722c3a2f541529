package main

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Flash reconnects of a connection with a bound app (resume_bound.go), on
// both engines, against the room alone.

// catchUpSaver is a recSaver that also answers broadcast catch-ups (with
// none), so logins and BINDs finish theirs and can be parked.
type catchUpSaver struct{ *recSaver }

func (catchUpSaver) CatchUp(context.Context, *internalpb.CatchUpRequest) (*internalpb.CatchUpReply, error) {
	return &internalpb.CatchUpReply{}, nil
}

// flashEnv starts a room that parks dropped sessions for window, with a
// recording saver.
func flashEnv(t *testing.T, engine string, window time.Duration) (*testEnv, *recSaver) {
	e := startEnv(t, engine, func(c *config) {
		c.flash = flashConfig{window: window, maxParked: 8}
		// A login pulls once, after its register put: with a short wait a
		// slow box also pulls when the wait passes, and the tests count pulls.
		c.authReplyWait = maxAuthReplyWait
	})
	e.putVendorApps(map[string]string{"main": "acme", "mail": "acme"})
	rs := &recSaver{users: map[string]int{}, backlog: map[string][]*internalpb.Message{}}
	serveSaver(t, e, catchUpSaver{rs})
	return e, rs
}

// pulls is how many times the user's stored messages were pulled.
func (s *recSaver) pulls(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[user]
}

// settled waits until the login and BIND of a connection finished their
// pulls and catch-ups: only then is the connection parked whole.
func settled(t *testing.T, e *testEnv, rs *recSaver, users ...string) {
	t.Helper()
	for _, u := range users {
		waitFor(t, "pull of "+u, func() bool { return rs.pulls(u) == 1 })
	}
	waitFor(t, "catch-ups done", func() bool {
		return metricValue(t, e.srv.r.m.catchUps.WithLabelValues("ok")) >= float64(len(users))
	})
	// saver counted the pull when it was asked; the room applies the answer
	// a moment later. A connection parked or handed over before that marks
	// its sessions behind, and they pull again.
	waitFor(t, "pull answers applied", func() bool {
		busy := false
		e.srv.r.hub.Range(func(s *session) {
			s.pending.mu.Lock()
			busy = busy || s.pending.pulling
			s.pending.mu.Unlock()
		})
		return !busy
	})
}

// loginWithMail logs user in to app main on a new connection and binds
// app mail on it as user-mail, and waits until both are settled.
func loginWithMail(t *testing.T, e *testEnv, rs *recSaver, user string) (c *tclient, mainTok, mailTok string, rep *clientpb.AuthReply, brep *clientpb.BindReply) {
	t.Helper()
	mainTok = e.token("main", testVendorSecret, user, "phone", time.Hour)
	mailTok = e.token("mail", testVendorSecret, user+"-mail", "", time.Hour)
	c = e.dial()
	rep = c.auth(mainTok, "")
	if rep.GetResumeToken() == "" || len(rep.GetResumedApps()) != 0 {
		t.Fatalf("AUTH_REPLY %v: want a resume token and no resumed apps", rep)
	}
	brep = c.bind(2, mailTok)
	if brep.GetCode() != 0 {
		t.Fatalf("BIND_REPLY %v", brep)
	}
	settled(t, e, rs, user, user+"-mail")
	return c, mainTok, mailTok, rep, brep
}

// authResume sends AUTH with a resume token and returns AUTH_REPLY.
func (c *tclient) authResume(tok, resume string) *clientpb.AuthReply {
	c.t.Helper()
	c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: tok, ResumeToken: resume})
	f, m := c.read()
	if f.Op != protocol.OpAuthReply || f.Seq != 1 {
		c.t.Fatalf("got %s seq %d %v, want AUTH_REPLY seq 1", f.Op, f.Seq, m)
	}
	return m.(*clientpb.AuthReply)
}

// A push to the bound app while the connection is parked arrives after the
// resume; the app is named in resumed_apps and bound again on the new
// connection under the same session id, and a BIND of it is answered as
// bound.
func TestFlashResumeBound(t *testing.T) { forEachEngine(t, testFlashResumeBound) }

func testFlashResumeBound(t *testing.T, engine string) {
	e, rs := flashEnv(t, engine, 30*time.Second)
	r := e.srv.r
	rc := e.roomClient()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, mainTok, mailTok, rep, brep := loginWithMail(t, e, rs, "u1")
	id := connID(t, brep.GetSessionId())
	_ = c.nc.Close()
	waitFor(t, "connection parked", func() bool { return r.flash.len() == 1 })
	waitFor(t, "bound app parked in the hub", func() bool {
		bs, ok := r.hub.Get(id)
		return ok && bs.bindLink() != nil && isParkConn(bs)
	})

	target := []*internalpb.Target{{ConnId: id, App: "mail", User: "u1-mail", Device: "phone"}}
	msg := &internalpb.Message{Id: 911, App: "mail", User: "u1-mail", Payload: []byte("gap"), Qos: 1}
	if prep, err := rc.Push(ctx, &internalpb.RoomPushRequest{Message: msg, Targets: target}); err != nil || prep.GetResults()[0].GetCode() != internalpb.ResultCode_RESULT_CODE_OK {
		t.Fatalf("push to the parked bound app: %v %v", prep, err)
	}

	c2 := e.dial()
	rep2 := c2.authResume(mainTok, rep.GetResumeToken())
	if !rep2.GetResumed() || rep2.GetSessionId() != rep.GetSessionId() {
		t.Fatalf("AUTH_REPLY %v: want session %s resumed", rep2, rep.GetSessionId())
	}
	if apps := rep2.GetResumedApps(); len(apps) != 1 || apps[0] != "mail" {
		t.Fatalf("resumed_apps %v, want [mail]", apps)
	}
	f, m := c2.read()
	if p, ok := m.(*clientpb.Push); f.Op != protocol.OpPush || !ok || p.GetApp() != "mail" || p.GetId() != 911 {
		t.Fatalf("got %s %v, want PUSH 911 of app mail", f.Op, m)
	}
	bs, ok := r.hub.Get(id)
	if !ok || bs.bindLink() == nil || bs.bindLink().primary.c != c2Conn(t, r, rep2) || !bs.pending.holds(911) {
		t.Fatal("the bound app is not resumed on the new connection with 911 in its window")
	}
	c2.write(protocol.OpAck, 2, &clientpb.Ack{Ids: []uint64{911}})
	c2.ping(3)
	if bs.pending.holds(911) {
		t.Fatal("ACK did not reach the resumed bound app's window")
	}
	// An older client binds again anyway: told it is bound, same session.
	if again := c2.bind(4, mailTok); again.GetCode() != 0 || again.GetSessionId() != brep.GetSessionId() {
		t.Fatalf("BIND of a resumed app: %v, want code 0 and session %s", again, brep.GetSessionId())
	}
	// Live pushes reach it on the new connection.
	msg.Id = 912
	if prep, err := rc.Push(ctx, &internalpb.RoomPushRequest{Message: msg, Targets: target}); err != nil || prep.GetResults()[0].GetCode() != internalpb.ResultCode_RESULT_CODE_OK {
		t.Fatalf("push after the resume: %v %v", prep, err)
	}
	if f, m := c2.read(); f.Op != protocol.OpPush || m.(*clientpb.Push).GetId() != 912 {
		t.Fatalf("got %s %v, want PUSH 912", f.Op, m)
	}
	if v := metricValue(t, r.multi.m.bound); v != 1 {
		t.Fatalf("bound apps gauge %v, want 1", v)
	}
	// The resume pulled nothing for either app.
	if a, b := rs.pulls("u1"), rs.pulls("u1-mail"); a != 1 || b != 1 {
		t.Fatalf("pulls u1 %d, u1-mail %d: want 1 each (the login and the BIND)", a, b)
	}
}

// A parked connection that is not resumed within the window ends its
// bound app as a close would: gone from the hub, unbinds{expired}, the
// bound gauge back to 0.
func TestFlashBoundExpires(t *testing.T) { forEachEngine(t, testFlashBoundExpires) }

func testFlashBoundExpires(t *testing.T, engine string) {
	e, rs := flashEnv(t, engine, 300*time.Millisecond)
	r := e.srv.r
	c := e.dial()
	c.auth(e.token("main", testVendorSecret, "u2", "phone", time.Hour), "")
	id := connID(t, c.bind(2, e.token("mail", testVendorSecret, "u2-mail", "", time.Hour)).GetSessionId())
	settled(t, e, rs, "u2", "u2-mail")
	_ = c.nc.Close()
	waitFor(t, "window passed", func() bool {
		return metricValue(t, r.m.flash.events.WithLabelValues("expired")) == 1
	})
	waitFor(t, "bound app ended", func() bool {
		_, ok := r.hub.Get(id)
		return !ok && r.hub.Len() == 0 && r.flash.len() == 0
	})
	if v := metricValue(t, r.multi.m.unbinds.WithLabelValues("expired")); v != 1 {
		t.Fatalf("unbinds{expired} %v, want 1", v)
	}
	if v := metricValue(t, r.multi.m.bound); v != 0 {
		t.Fatalf("bound apps gauge %v, want 0", v)
	}
}

func isParkConn(s *session) bool { _, ok := s.c.(*parkConn); return ok }

// c2Conn returns the connection of the session a resumed AUTH_REPLY names.
func c2Conn(t *testing.T, r *room, rep *clientpb.AuthReply) conn {
	s, ok := r.hub.Get(connID(t, rep.GetSessionId()))
	if !ok {
		return nil
	}
	return s.c
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.GetCounter().GetValue()
	}
	return d.GetGauge().GetValue()
}

// A bound app whose parked queue fills ends the parked connection with all
// its apps, as a slow consumer ends a live one.
func TestFlashBoundQueueFull(t *testing.T) { forEachEngine(t, testFlashBoundQueueFull) }

func testFlashBoundQueueFull(t *testing.T, engine string) {
	e, rs := flashEnv(t, engine, 30*time.Second)
	r := e.srv.r
	rc := e.roomClient()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := e.dial()
	c.auth(e.token("main", testVendorSecret, "u3", "phone", time.Hour), "")
	id := connID(t, c.bind(2, e.token("mail", testVendorSecret, "u3-mail", "", time.Hour)).GetSessionId())
	settled(t, e, rs, "u3", "u3-mail")
	_ = c.nc.Close()
	waitFor(t, "connection parked", func() bool { return r.flash.len() == 1 })
	target := []*internalpb.Target{{ConnId: id, App: "mail", User: "u3-mail", Device: "phone"}}
	// QoS 0: not held back by the in-flight window, so each is queued.
	for i := 0; i <= e.cfg.sendQueue; i++ {
		msg := &internalpb.Message{Id: uint64(920 + i), App: "mail", User: "u3-mail", Payload: []byte("q")}
		if _, err := rc.Push(ctx, &internalpb.RoomPushRequest{Message: msg, Targets: target}); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	waitFor(t, "parked connection ended", func() bool {
		return r.flash.len() == 0 && r.hub.Len() == 0 &&
			metricValue(t, r.m.flash.events.WithLabelValues("ended")) == 1
	})
	if v := metricValue(t, r.multi.m.unbinds.WithLabelValues("ended")); v != 1 {
		t.Fatalf("unbinds{ended} %v, want 1", v)
	}
	if v := metricValue(t, r.multi.m.bound); v != 0 {
		t.Fatalf("bound apps gauge %v, want 0", v)
	}
}

// A hand-over: the client reconnects while the room still holds its old
// connection open. The bound app moves to the new connection with the
// primary session: named in resumed_apps, same session id, no register
// put or saver pull, and the old connection's close does not end it.
func TestFlashHandOverBound(t *testing.T) { forEachEngine(t, testFlashHandOverBound) }

func testFlashHandOverBound(t *testing.T, engine string) {
	e, rs := flashEnv(t, engine, 30*time.Second)
	r := e.srv.r
	rc := e.roomClient()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, mainTok, _, rep, brep := loginWithMail(t, e, rs, "u4")
	id := connID(t, brep.GetSessionId())

	// The old connection stays open: the room has not seen it drop.
	c2 := e.dial()
	rep2 := c2.authResume(mainTok, rep.GetResumeToken())
	if !rep2.GetResumed() || rep2.GetSessionId() != rep.GetSessionId() {
		t.Fatalf("AUTH_REPLY %v: want session %s resumed", rep2, rep.GetSessionId())
	}
	if apps := rep2.GetResumedApps(); len(apps) != 1 || apps[0] != "mail" {
		t.Fatalf("resumed_apps %v, want [mail]", apps)
	}
	// The old connection is closed by the room.
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := c.r.Read(); err != nil {
			break
		}
	}
	waitFor(t, "old connection gone", func() bool { return r.conns.Load() == 1 })

	target := []*internalpb.Target{{ConnId: id, App: "mail", User: "u4-mail", Device: "phone"}}
	msg := &internalpb.Message{Id: 931, App: "mail", User: "u4-mail", Payload: []byte("after"), Qos: 1}
	if prep, err := rc.Push(ctx, &internalpb.RoomPushRequest{Message: msg, Targets: target}); err != nil || prep.GetResults()[0].GetCode() != internalpb.ResultCode_RESULT_CODE_OK {
		t.Fatalf("push to the handed-over bound app: %v %v", prep, err)
	}
	f, m := c2.read()
	if p, ok := m.(*clientpb.Push); f.Op != protocol.OpPush || !ok || p.GetApp() != "mail" || p.GetId() != 931 {
		t.Fatalf("got %s %v, want PUSH 931 of app mail", f.Op, m)
	}
	bs, ok := r.hub.Get(id)
	if !ok || bs.bindLink() == nil || bs.bindLink().primary.c != c2Conn(t, r, rep2) {
		t.Fatal("the bound app is not on the new connection")
	}
	if v := metricValue(t, r.multi.m.bound); v != 1 {
		t.Fatalf("bound apps gauge %v, want 1", v)
	}
	if v := metricValue(t, r.multi.m.unbinds.WithLabelValues("closed")); v != 0 {
		t.Fatalf("unbinds{closed} %v, want 0: the old connection's close ended the moved app", v)
	}
	if a, b := rs.pulls("u4"), rs.pulls("u4-mail"); a != 1 || b != 1 {
		t.Fatalf("pulls u4 %d, u4-mail %d: want 1 each (the login and the BIND)", a, b)
	}
}

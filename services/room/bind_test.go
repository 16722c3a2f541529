package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// BIND and UNBIND (docs/protocol.md §4.2) on both engines, against the
// room alone (register and saver are absent: BIND_REPLY comes after
// -auth-reply-wait).

const testVendorSecret = "secret-of-vendor-apps-0123"

// putVendorApps stores apps of the given vendors and waits until the
// room's config watch has them.
func (e *testEnv) putVendorApps(apps map[string]string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, vendor := range apps {
		a := appconfig.App{Name: name, Secret: testVendorSecret, APIKey: "api-key-" + name + "-0123456789"}
		a.Vendor = vendor
		if err := appconfig.Put(ctx, e.cli, e.cluster, a); err != nil {
			e.t.Fatal(err)
		}
	}
	for name := range apps {
		waitFor(e.t, "app "+name+" in the room's config", func() bool { _, ok := e.deps.appOf(name); return ok })
	}
}

// bind sends BIND and returns its BIND_REPLY.
func (c *tclient) bind(seq uint32, tok string) *clientpb.BindReply {
	c.t.Helper()
	c.write(protocol.OpBind, seq, &clientpb.Bind{Token: tok})
	f, m := c.read()
	if f.Op != protocol.OpBindReply || f.Seq != seq {
		c.t.Fatalf("got %s seq %d %v, want BIND_REPLY seq %d", f.Op, f.Seq, m, seq)
	}
	return m.(*clientpb.BindReply)
}

func TestBindPushUnbind(t *testing.T) { forEachEngine(t, testBindPushUnbind) }

func testBindPushUnbind(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	e.putVendorApps(map[string]string{"main": "acme", "mail": "acme"})
	rc := e.roomClient()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := e.dial()
	c.auth(e.token("main", testVendorSecret, "u1", "phone", time.Hour), "")
	rep := c.bind(2, e.token("mail", testVendorSecret, "u1-mail", "", time.Hour))
	if rep.GetCode() != 0 || rep.GetApp() != "mail" || rep.GetSessionId() == "" {
		t.Fatalf("BIND_REPLY %v, want code 0 for app mail with a session id", rep)
	}
	id := connID(t, rep.GetSessionId())
	target := []*internalpb.Target{{ConnId: id, App: "mail", User: "u1-mail", Device: "phone"}}
	msg := &internalpb.Message{Id: 901, App: "mail", User: "u1-mail", Payload: []byte("m"), Qos: 1}
	if prep, err := rc.Push(ctx, &internalpb.RoomPushRequest{Message: msg, Targets: target}); err != nil || prep.GetResults()[0].GetCode() != internalpb.ResultCode_RESULT_CODE_OK {
		t.Fatalf("push to the bound app: %v %v", prep, err)
	}
	f, m := c.read()
	if f.Op != protocol.OpPush || m.(*clientpb.Push).GetApp() != "mail" || m.(*clientpb.Push).GetId() != 901 {
		t.Fatalf("got %s %v, want PUSH 901 of app mail", f.Op, m)
	}
	bs, ok := e.srv.r.hub.Get(id)
	if !ok || !bs.pending.holds(901) {
		t.Fatal("the bound app's window does not hold the push")
	}
	// The ACK on the shared connection frees the bound app's window.
	c.write(protocol.OpAck, 3, &clientpb.Ack{Ids: []uint64{901}})
	c.ping(4)
	if bs.pending.holds(901) {
		t.Fatal("ACK did not reach the bound app's window")
	}

	c.write(protocol.OpUnbind, 5, &clientpb.Unbind{App: "mail"})
	f, m = c.read()
	if f.Op != protocol.OpUnbindReply || f.Seq != 5 || m.(*clientpb.UnbindReply).GetCode() != 0 {
		t.Fatalf("got %s seq %d %v, want UNBIND_REPLY 0 seq 5", f.Op, f.Seq, m)
	}
	msg.Id = 902
	if prep, err := rc.Push(ctx, &internalpb.RoomPushRequest{Message: msg, Targets: target}); err != nil || prep.GetResults()[0].GetCode() != internalpb.ResultCode_RESULT_CODE_NOT_FOUND {
		t.Fatalf("push after UNBIND: %v %v, want NOT_FOUND", prep, err)
	}
	// Nothing of the unbound app comes before the PONG.
	c.ping(6)
	// Unbinding again, or the primary app: NOT_BOUND; the connection stays.
	for i, app := range []string{"mail", "main"} {
		seq := uint32(7 + i)
		c.write(protocol.OpUnbind, seq, &clientpb.Unbind{App: app})
		f, m = c.read()
		if f.Op != protocol.OpUnbindReply || f.Seq != seq || protocol.Code(m.(*clientpb.UnbindReply).GetCode()) != protocol.CodeNotBound {
			t.Fatalf("UNBIND %s: got %s seq %d %v, want UNBIND_REPLY NOT_BOUND", app, f.Op, f.Seq, m)
		}
	}
	c.ping(9)
}

func TestBindRefused(t *testing.T) { forEachEngine(t, testBindRefused) }

func testBindRefused(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	apps := map[string]string{"main": "acme", "other": "globex", "novendor": ""}
	for i := 0; i <= protocol.MaxBoundApps; i++ {
		apps[fmt.Sprintf("acme%d", i)] = "acme"
	}
	e.putVendorApps(apps)
	c := e.dial()
	c.auth(e.token("main", testVendorSecret, "u2", "phone", time.Hour), "")
	seq := uint32(1)
	expect := func(tok string, code protocol.Code) {
		t.Helper()
		seq++
		if rep := c.bind(seq, tok); protocol.Code(rep.GetCode()) != code {
			t.Fatalf("BIND: %v, want %s", rep, code)
		}
	}
	expect("not-a-token", protocol.CodeTokenInvalid)
	expect(e.token("acme0", "wrong-secret-0123456789", "u2", "", time.Hour), protocol.CodeTokenInvalid)
	expect(e.token("acme0", testVendorSecret, "u2", "", -time.Hour), protocol.CodeTokenExpired)
	expect(e.token("other", testVendorSecret, "u2", "", time.Hour), protocol.CodeBindVendor)
	expect(e.token("novendor", testVendorSecret, "u2", "", time.Hour), protocol.CodeBindVendor)
	expect(e.token("main", testVendorSecret, "u2", "", time.Hour), protocol.CodeAlreadyBound)
	expect(e.token("acme0", testVendorSecret, "u2", "tablet", time.Hour), protocol.CodeTokenInvalid)
	for i := 0; i < protocol.MaxBoundApps; i++ {
		expect(e.token(fmt.Sprintf("acme%d", i), testVendorSecret, "u2", "", time.Hour), protocol.CodeOK)
	}
	// Again for the same user and device (an older client re-binding after
	// a resume): answered as bound. For another user of the app: refused.
	expect(e.token("acme0", testVendorSecret, "u2", "", time.Hour), protocol.CodeOK)
	expect(e.token("acme0", testVendorSecret, "u9", "", time.Hour), protocol.CodeAlreadyBound)
	expect(e.token(fmt.Sprintf("acme%d", protocol.MaxBoundApps), testVendorSecret, "u2", "", time.Hour), protocol.CodeBindLimit)
	c.ping(100)
	// A BIND body that is not a Bind is a protocol error like any other.
	c.writeRaw(protocol.AppendFrame(nil, protocol.OpBind, 0, 101, []byte{0x0a, 0x09, 'x'}))
	c.expectError(protocol.CodeBadBody)
	// The closed connection took its bound apps with it.
	waitFor(t, "no session left in the hub after the close", func() bool { return e.srv.r.hub.Len() == 0 })
}

// A kick of a bound app (the app's API, or a newer login) ends only that
// app: the client gets UNBIND with the code, the connection stays.
func TestBindKick(t *testing.T) { forEachEngine(t, testBindKick) }

func testBindKick(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	e.putVendorApps(map[string]string{"main": "acme", "mail": "acme"})
	rc := e.roomClient()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := e.dial()
	c.auth(e.token("main", testVendorSecret, "u3", "phone", time.Hour), "")
	id := connID(t, c.bind(2, e.token("mail", testVendorSecret, "u3", "", time.Hour)).GetSessionId())
	krep, err := rc.Kick(ctx, &internalpb.RoomKickRequest{Targets: []*internalpb.Target{{ConnId: id, App: "mail", User: "u3"}}, Reason: "bye", Code: uint32(protocol.CodeReplaced)})
	if err != nil || krep.GetResults()[0].GetCode() != internalpb.ResultCode_RESULT_CODE_OK {
		t.Fatalf("kick: %v %v", krep, err)
	}
	f, m := c.read()
	u, _ := m.(*clientpb.Unbind)
	if f.Op != protocol.OpUnbind || f.Seq != 0 || u.GetApp() != "mail" || protocol.Code(u.GetCode()) != protocol.CodeReplaced || u.GetReason() != "bye" {
		t.Fatalf("got %s seq %d %v, want UNBIND mail REPLACED seq 0", f.Op, f.Seq, m)
	}
	c.ping(3)
	// The same device binding the app on a second connection replaces the
	// first binding the same way.
	id = connID(t, c.bind(4, e.token("mail", testVendorSecret, "u3", "", time.Hour)).GetSessionId())
	c2 := e.dial()
	c2.auth(e.token("mail", testVendorSecret, "u3", "phone", time.Hour), "")
	f, m = c.read()
	if f.Op != protocol.OpUnbind || m.(*clientpb.Unbind).GetApp() != "mail" || protocol.Code(m.(*clientpb.Unbind).GetCode()) != protocol.CodeReplaced {
		t.Fatalf("got %s %v, want UNBIND mail REPLACED", f.Op, m)
	}
	c.ping(5)
	if _, ok := e.srv.r.hub.Get(id); ok {
		t.Fatal("the replaced binding is still in the hub")
	}
}

func TestSupersededSessions(t *testing.T) {
	me := &internalpb.Session{App: "a", User: "u", Device: "d3", RoomId: "r1", ConnId: 9, LoginMs: 1000, Platform: "iOS/18"}
	all := []*internalpb.Session{
		me,
		{App: "a", User: "u", Device: "d1", RoomId: "r2", ConnId: 1, LoginMs: 900, Platform: "ios/17.4"},
		{App: "a", User: "u", Device: "d2", RoomId: "r1", ConnId: 2, LoginMs: 950, Platform: "android/14"},
		{App: "a", User: "u", Device: "d4", RoomId: "r2", ConnId: 3, LoginMs: 1100, Platform: "ios/17"},  // newer: stays
		{App: "a", User: "u", Device: "d5", RoomId: "r0", ConnId: 4, LoginMs: 1000, Platform: "android"}, // tie, r0 < r1: older
	}
	devices := func(ss []*internalpb.Session) string {
		out := ""
		for _, s := range ss {
			out += s.GetDevice() + " "
		}
		return out
	}
	if got := devices(supersededSessions(me, all, appconfig.LoginOne)); got != "d1 d2 d5 " {
		t.Fatalf("one: %q", got)
	}
	if got := devices(supersededSessions(me, all, appconfig.LoginOnePerPlatform)); got != "d1 " {
		t.Fatalf("one-per-platform: %q", got)
	}
	if got := supersededSessions(me, all, appconfig.LoginMulti); len(got) != 0 {
		t.Fatalf("multi: %v", got)
	}
	// Of two logins each sees the same one as older.
	for _, o := range all[1:] {
		if loggedInBefore(o, me) == loggedInBefore(me, o) {
			t.Fatalf("order of %v and me is not strict", o)
		}
	}
}

package sdk

import (
	"context"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// answerBind reads the next frame, which must be a BIND with token tok,
// and answers it as bound for app.
func (rc *roomConn) answerBind(t *testing.T, tok, app string) {
	t.Helper()
	select {
	case f, ok := <-rc.frames:
		if !ok || f.Op != protocol.OpBind {
			t.Fatalf("got %s (open %v), want BIND", f.Op, ok)
		}
		m, err := protocol.DecodeBody(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.(*clientpb.Bind).GetToken(); got != tok {
			t.Fatalf("BIND with token %q, want %q", got, tok)
		}
		rc.send(protocol.OpBindReply, f.Seq, &clientpb.BindReply{App: app, SessionId: "s-" + app})
	case <-time.After(5 * time.Second):
		t.Fatalf("no BIND of %s within 5s", app)
	}
}

// After a resumed login, the apps AuthReply.resumed_apps names are not
// bound again; the others are.
func TestResumeSkipsKeptBinds(t *testing.T) {
	room := newTestRoom(t)
	room.replyFn = func(a *clientpb.Auth) *clientpb.AuthReply {
		rep := &clientpb.AuthReply{SessionId: "s1", HeartbeatSeconds: 30, MaxInflight: 1000, ResumeToken: "rt"}
		if a.GetResumeToken() == "rt" {
			rep.Resumed, rep.ResumedApps = true, []string{"mail"}
		}
		return rep
	}
	h := start(t, Config{Endpoints: []string{room.addr()}})
	rc := room.next(t)
	h.state(t, "connected "+room.addr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, app := range []string{"mail", "news"} {
		done := make(chan error, 1)
		go func() { done <- h.c.Bind(ctx, app, "tok-"+app) }()
		rc.answerBind(t, "tok-"+app, app)
		if err := <-done; err != nil {
			t.Fatalf("Bind %s: %v", app, err)
		}
	}
	h.c.Reconnect()
	h.state(t, "disconnected "+room.addr())
	rc2 := room.next(t)
	h.state(t, "connected "+room.addr())
	if rc2.auth.GetResumeToken() != "rt" {
		t.Fatalf("AUTH %v: want the resume token", rc2.auth)
	}
	// Only news is bound again; mail was kept by the resumed session.
	rc2.answerBind(t, "tok-news", "news")
	rc2.noFrame(t, 200*time.Millisecond)
	if st := h.c.Stats(); st.Resumed != 1 || st.RebindsSkipped != 1 {
		t.Fatalf("stats %+v, want 1 resumed and 1 rebind skipped", st)
	}
	if got := len(h.c.Bound()); got != 2 {
		t.Fatalf("bound %v, want mail and news", h.c.Bound())
	}
}

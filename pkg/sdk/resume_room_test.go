package sdk

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// After a plain drop the client dials the room it was on first, even when
// the dispatcher now lists another room first: only that room holds the
// session for a flash resume.
func TestReconnectPrefersResumeRoom(t *testing.T) {
	a, b := newTestRoom(t), newTestRoom(t)
	for _, r := range []*testRoom{a, b} {
		r.replyFn = func(*clientpb.Auth) *clientpb.AuthReply {
			return &clientpb.AuthReply{SessionId: "s1", HeartbeatSeconds: 30, MaxInflight: 64, ResumeToken: "resume-me"}
		}
	}
	disp, calls := flipDispatcher(t, a, b)

	start(t, Config{DispatcherURL: disp.URL})
	rc := b.next(t)
	if rc.auth.GetResumeToken() != "" {
		t.Fatalf("first AUTH carried resume token %q", rc.auth.GetResumeToken())
	}
	_ = rc.c.Close() // a plain drop: no frame
	rc2 := b.next(t)
	if got := rc2.auth.GetResumeToken(); got != "resume-me" {
		t.Fatalf("reconnect AUTH resume token %q, want resume-me", got)
	}
	if n := a.authCount(); n != 0 {
		t.Fatalf("room a got %d AUTHs; the client should have gone back to b", n)
	}
	if calls.Load() < 2 {
		t.Fatalf("dispatcher asked %d times, want the reconnect to ask again", calls.Load())
	}
}

// flipDispatcher answers [b, a] the first time (the client lands on b) and
// [a, b] after that (a is its rendezvous room, say); calls counts answers.
func flipDispatcher(t *testing.T, a, b *testRoom) (*httptest.Server, *atomic.Int32) {
	calls := new(atomic.Int32)
	disp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		first, second := a.addr(), b.addr()
		if calls.Add(1) == 1 {
			first, second = second, first
		}
		_, _ = w.Write([]byte(`{"endpoints":["` + first + `","` + second + `"]}`))
	}))
	t.Cleanup(disp.Close)
	return disp, calls
}

func TestResumeFirst(t *testing.T) {
	for _, c := range []struct {
		eps  []string
		ep   string
		ok   bool
		want []string
	}{
		{[]string{"a", "b", "c"}, "c", true, []string{"c", "a", "b", "c"}},
		{[]string{"a", "b"}, "a", true, []string{"a", "a", "b"}},
		{[]string{"a", "b"}, "x", true, []string{"a", "b"}}, // not offered: not asked
		{[]string{"a", "b"}, "b", false, []string{"a", "b"}},
		{[]string{"a", "b"}, "", true, []string{"a", "b"}},
		{nil, "x", true, nil},
	} {
		if got := resumeFirst(c.eps, c.ep, c.ok); !slices.Equal(got, c.want) {
			t.Errorf("resumeFirst(%v, %q, %v) = %v, want %v", c.eps, c.ep, c.ok, got, c.want)
		}
	}
}

// A room that hangs after the drop (it still accepts connections) costs
// the resume attempt resumeAuthTimeout, not authTimeout: the client then
// logs in afresh at the next room, without resume_only.
func TestResumeAtHungRoomGivesUpFast(t *testing.T) {
	a, b := newTestRoom(t), newTestRoom(t)
	reply := func(*clientpb.Auth) *clientpb.AuthReply {
		return &clientpb.AuthReply{SessionId: "s1", HeartbeatSeconds: 30, MaxInflight: 64, ResumeToken: "resume-me"}
	}
	a.replyFn, b.replyFn = reply, reply
	hang := make(chan struct{})
	var hung atomic.Bool
	t.Cleanup(func() { close(hang) })
	b.authFn = func(*clientpb.Auth) (protocol.Op, proto.Message) {
		if hung.Load() {
			<-hang // a SIGSTOPped room: the connection is accepted, AUTH never answered
		}
		return protocol.OpAuthReply, nil
	}
	disp, _ := flipDispatcher(t, a, b)

	start(t, Config{DispatcherURL: disp.URL})
	rc := b.next(t)
	hung.Store(true)
	t0 := time.Now()
	_ = rc.c.Close()
	rca := a.next(t)
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("logged in elsewhere after %s: waited out the full AUTH timeout", d)
	}
	if rca.auth.GetResumeOnly() {
		t.Fatal("the login at the next room was resume-only")
	}
	b.mu.Lock()
	last := b.auths[len(b.auths)-1]
	b.mu.Unlock()
	if !last.GetResumeOnly() || last.GetResumeToken() != "resume-me" {
		t.Fatalf("AUTH at the hung room %v: want a resume-only attempt with the token", last)
	}
}

// RESUME_MISS: the room is up but holds no session; the client logs in
// afresh in the dispatcher's order, with no back-off and nothing marked
// failed.
func TestResumeMissLogsInAgain(t *testing.T) {
	b := newTestRoom(t)
	b.replyFn = func(*clientpb.Auth) *clientpb.AuthReply {
		return &clientpb.AuthReply{SessionId: "s1", HeartbeatSeconds: 30, MaxInflight: 64, ResumeToken: "resume-me"}
	}
	b.authFn = func(a *clientpb.Auth) (protocol.Op, proto.Message) {
		if a.GetResumeOnly() {
			return protocol.OpError, &clientpb.Error{Code: uint32(protocol.CodeResumeMiss), Message: "no session"}
		}
		return protocol.OpAuthReply, nil
	}
	disp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"endpoints":["` + b.addr() + `"]}`))
	}))
	defer disp.Close()
	start(t, Config{DispatcherURL: disp.URL})
	rc := b.next(t)
	_ = rc.c.Close()
	rc2 := b.next(t)
	if rc2.auth.GetResumeOnly() {
		t.Fatal("the login after RESUME_MISS was resume-only")
	}
	b.mu.Lock()
	n := len(b.auths)
	miss := b.auths[n-2]
	b.mu.Unlock()
	if n != 3 || !miss.GetResumeOnly() {
		t.Fatalf("%d AUTHs (want login, resume-only, login), the second %v", n, miss)
	}
}

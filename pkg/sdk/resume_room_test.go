package sdk

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

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
	// The first answer puts b first (the client lands there), every later
	// one a (its rendezvous room, say).
	var calls atomic.Int32
	disp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		first, second := a.addr(), b.addr()
		if calls.Add(1) == 1 {
			first, second = second, first
		}
		_, _ = w.Write([]byte(`{"endpoints":["` + first + `","` + second + `"]}`))
	}))
	defer disp.Close()

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

func TestPreferEndpoint(t *testing.T) {
	for _, c := range []struct {
		eps  []string
		ep   string
		want []string
	}{
		{[]string{"a", "b", "c"}, "c", []string{"c", "a", "b"}},
		{[]string{"a", "b", "c"}, "b", []string{"b", "a", "c"}},
		{[]string{"a", "b"}, "a", []string{"a", "b"}},
		{[]string{"a", "b"}, "x", []string{"a", "b"}}, // not offered: not dialled
		{nil, "x", nil},
	} {
		if got := preferEndpoint(c.eps, c.ep); !slices.Equal(got, c.want) {
			t.Errorf("preferEndpoint(%v, %q) = %v, want %v", c.eps, c.ep, got, c.want)
		}
	}
}

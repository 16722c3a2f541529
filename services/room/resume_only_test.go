package main

import (
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// A resume-only AUTH the room cannot resume is refused with RESUME_MISS and
// logs nobody in: it may have waited in the socket while the room hung,
// and its client logged in elsewhere meanwhile. With a token the room
// holds, it resumes as usual.
func TestResumeOnly(t *testing.T) { forEachEngine(t, testResumeOnly) }

func testResumeOnly(t *testing.T, engine string) {
	e, rs := flashEnv(t, engine, 30*time.Second)
	r := e.srv.r
	tok := e.token("main", testVendorSecret, "u5", "phone", time.Hour)

	c := e.dial()
	c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: tok, ResumeToken: "not-a-token-this-room-gave", ResumeOnly: true})
	c.expectError(protocol.CodeResumeMiss)
	waitFor(t, "the refused connection gone", func() bool { return r.conns.Load() == 0 })
	if n := r.hub.Len(); n != 0 {
		t.Fatalf("hub holds %d sessions after a refused resume-only AUTH", n)
	}
	if v := metricValue(t, r.m.auths.WithLabelValues(protocol.CodeResumeMiss.String())); v != 1 {
		t.Fatalf("auths{RESUME_MISS} %v, want 1", v)
	}

	c2 := e.dial()
	rep := c2.auth(tok, "")
	settled(t, e, rs, "u5")
	_ = c2.nc.Close()
	waitFor(t, "connection parked", func() bool { return r.flash.len() == 1 })
	c3 := e.dial()
	c3.write(protocol.OpAuth, 1, &clientpb.Auth{Token: tok, ResumeToken: rep.GetResumeToken(), ResumeOnly: true})
	f, m := c3.read()
	if ar, ok := m.(*clientpb.AuthReply); f.Op != protocol.OpAuthReply || !ok || !ar.GetResumed() || ar.GetSessionId() != rep.GetSessionId() {
		t.Fatalf("got %s %v, want AUTH_REPLY resuming %s", f.Op, m, rep.GetSessionId())
	}
}

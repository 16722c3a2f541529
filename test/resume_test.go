package test

import (
	"strings"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// methodCalls sums the served calls of one gRPC method (any code) in a
// service's rpc duration histogram.
func methodCalls(t *testing.T, c *Cluster, proc, metric, method string) float64 {
	t.Helper()
	var n float64
	for series, v := range ScrapeAdmin(t, c.Procs[proc].Admin) {
		if strings.HasPrefix(series, metric+"_count{") && strings.Contains(series, "/"+method+"\"") {
			n += v
		}
	}
	return n
}

// storageCalls is what a login costs at register and saver: puts and
// deletes of sessions, pending pulls and broadcast catch-ups.
func storageCalls(t *testing.T, c *Cluster) map[string]float64 {
	return map[string]float64{
		"Register/Put":    methodCalls(t, c, "register", "pushgw_register_rpc_duration_seconds", "Put"),
		"Register/Delete": methodCalls(t, c, "register", "pushgw_register_rpc_duration_seconds", "Delete"),
		"Saver/Pending":   saverPendingCalls(t, c), // Pending calls and PendingBatch users
		"Saver/CatchUp":   methodCalls(t, c, "saver", "pushgw_saver_rpc_duration_seconds", "CatchUp"),
	}
}

// TestFlashReconnect: a client that drops and comes back to the same room
// within -resume-window resumes its session with no call to register or
// saver, and gets what was pushed during the gap; after the window its
// login is a full one.
func TestFlashReconnect(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, ExtraRoomArg: []string{"-resume-window", "4s"}})
	waitCenterStores(t, c)
	cl := startSDK(t, c, "flash-user", "phone")
	Eventually(t, 20*time.Second, "client connected", func() bool { return cl.Endpoint() != "" })
	first := c.Push("flash-user", 1, time.Hour, "before the drop")
	Eventually(t, 20*time.Second, "first message handled", func() bool { return cl.Count(first) == 1 })
	// Its ACK reaches saver and the window empties: nothing in flight.
	Eventually(t, 20*time.Second, "first message acked", func() bool { return c.Status(first) == "acked" })
	// The room parks only a session whose login catch-up finished; one
	// that started before the room found saver retries after 1 s, 2 s…
	Eventually(t, 30*time.Second, "login catch-up done", func() bool {
		return ScrapeAdmin(t, c.Procs[RoomName(0)].Admin)[`pushgw_room_broadcast_catchups_total{result="ok"}`] >= 1
	})

	before := storageCalls(t, c)
	// The client is stopped from reconnecting at once by the drop itself:
	// it redials after its short back-off, while the room parks the
	// session. Either order resumes (a parked session or a hand-over).
	cl.Reconnect()
	Eventually(t, 20*time.Second, "session resumed", func() bool {
		return cl.Stats().Resumed == 1 && cl.Endpoint() != ""
	})
	gap := c.Push("flash-user", 1, time.Hour, "after the resume")
	Eventually(t, 20*time.Second, "message after the resume handled", func() bool { return cl.Count(gap) == 1 })
	after := storageCalls(t, c)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s called %v times during the resume, want 0", k, after[k]-v)
		}
	}
	if v := AdminValue(t, c.Procs[RoomName(0)].Admin, `pushgw_room_session_resume_total{event="resumed"}`); v != 1 {
		t.Fatalf("resumed counter %v, want 1", v)
	}
}

// TestFlashReconnectQueuesWhileParked: pushes for a parked session wait in
// it and arrive on the resume, still with no register or saver call from
// the room; past the window the session ends and the next login is full.
func TestFlashReconnectQueuesWhileParked(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, ExtraRoomArg: []string{"-resume-window", "3s"}})
	room := c.Procs[RoomName(0)].Admin
	waitCenterStores(t, c)
	raw := Dial(t, c.RoomTCP[0])
	rep := raw.Auth(c.Token("parked-user", "phone", time.Hour))
	if rep.GetResumeToken() == "" || rep.GetResumed() {
		t.Fatalf("AUTH_REPLY %v: want a resume token, not resumed", rep)
	}
	// The login's pull of stored messages done: a session dropped during
	// its pull resumes with a pull again (what it pulled went nowhere).
	Eventually(t, 20*time.Second, "login pull answered", func() bool {
		return saverPendingCalls(t, c) >= 1
	})
	raw.Conn.Close()
	Eventually(t, 20*time.Second, "session parked", func() bool {
		return AdminValue(t, room, "pushgw_room_sessions_parked") == 1
	})
	before := storageCalls(t, c)
	id := c.Push("parked-user", 1, time.Hour, "while parked")
	Eventually(t, 20*time.Second, "push queued in the parked session", func() bool {
		return c.Status(id) == "delivered"
	})

	again := Dial(t, c.RoomTCP[0])
	rep2 := again.AuthResume(c.Token("parked-user", "phone", time.Hour), rep.GetResumeToken())
	if !rep2.GetResumed() || rep2.GetSessionId() != rep.GetSessionId() || rep2.GetResumeToken() == "" {
		t.Fatalf("AUTH_REPLY %v: want the session %s resumed with a new token", rep2, rep.GetSessionId())
	}
	p, err := again.NextPush(10 * time.Second)
	if err != nil || p.GetId() != id {
		t.Fatalf("after the resume: push %v, %v; want message %d", p, err, id)
	}
	after := storageCalls(t, c)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s called %v times during park and resume, want 0", k, after[k]-v)
		}
	}
	// A stale token (the first one) is refused quietly: a full login.
	again.Conn.Close()
	Eventually(t, 20*time.Second, "parked again", func() bool {
		return AdminValue(t, room, "pushgw_room_sessions_parked") == 1
	})
	Eventually(t, 20*time.Second, "the window passed", func() bool {
		m := ScrapeAdmin(t, room)
		return m[`pushgw_room_session_resume_total{event="expired"}`] == 1 && m["pushgw_room_sessions_parked"] == 0
	})
	late := Dial(t, c.RoomTCP[0])
	rep3 := late.AuthResume(c.Token("parked-user", "phone", time.Hour), rep2.GetResumeToken())
	if rep3.GetResumed() {
		t.Fatal("resumed after the window")
	}
	// The full login pulls the message never acked.
	p, err = late.NextPush(10 * time.Second)
	if err != nil || p.GetId() != id {
		t.Fatalf("after the full login: push %v, %v; want message %d again", p, err, id)
	}
	Eventually(t, 20*time.Second, "full login registered", func() bool {
		return methodCalls(t, c, "register", "pushgw_register_rpc_duration_seconds", "Put") > after["Register/Put"]
	})
}

// AuthResume sends AUTH with a resume token and expects AUTH_REPLY.
func (rc *RawClient) AuthResume(tok, resume string) *clientpb.AuthReply {
	rc.t.Helper()
	rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok, ResumeToken: resume})
	f, m, err := rc.Read(5 * time.Second)
	if err != nil {
		rc.t.Fatalf("auth: %v", err)
	}
	if f.Op != protocol.OpAuthReply {
		rc.t.Fatalf("auth: got %s %v, want AUTH_REPLY", f.Op, m)
	}
	return m.(*clientpb.AuthReply)
}

// waitCenterStores waits until center takes pushes: it finds saver through
// discovery a moment after start, and answers 503 before that.
func waitCenterStores(t *testing.T, c *Cluster) {
	t.Helper()
	Eventually(t, 30*time.Second, "center stores pushes", func() bool {
		code, _ := c.API("POST", "/v1/push", map[string]any{"app": c.App, "user": "warm-up", "payload": "x", "qos": 1})
		return code == 200
	})
}

// A broadcast written to a connection that dropped before the client read
// it counts as given on the parked session; the resumed login reports a
// lower last seq, and the room catches it up from saver (the fault suite
// lost one broadcast to 27 clients whose reconnect storm raced it).
func TestFlashResumeCatchesUpLostBroadcast(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, ExtraRoomArg: []string{"-resume-window", "10s"}})
	room := c.Procs[RoomName(0)].Admin
	waitCenterStores(t, c)
	raw := Dial(t, c.RoomTCP[0])
	tok := c.Token("bcast-flash", "phone", time.Hour)
	rep := raw.Auth(tok)
	Eventually(t, 30*time.Second, "login catch-up done", func() bool {
		return ScrapeAdmin(t, room)[`pushgw_room_broadcast_catchups_total{result="ok"}`] >= 1
	})
	id, seq, _ := c.broadcast(t, c.CenterURLs[0], map[string]any{"payload": "to everyone", "qos": 1, "ttl": 600})
	p, err := raw.NextPush(10 * time.Second)
	if err != nil || p.GetId() != id || p.GetBroadcastSeq() != seq {
		t.Fatalf("broadcast: push %v, %v; want id %d seq %d", p, err, id, seq)
	}
	// The client "lost" it: it drops and says it has only seq-1.
	raw.Conn.Close()
	Eventually(t, 20*time.Second, "session parked", func() bool {
		return AdminValue(t, room, "pushgw_room_sessions_parked") == 1
	})
	again := Dial(t, c.RoomTCP[0])
	again.Send(protocol.OpAuth, &clientpb.Auth{Token: tok, ResumeToken: rep.GetResumeToken(), LastBroadcastSeq: seq - 1})
	f, m, err := again.Read(5 * time.Second)
	if err != nil || f.Op != protocol.OpAuthReply || !m.(*clientpb.AuthReply).GetResumed() {
		t.Fatalf("resume: %v %v %v", f, m, err)
	}
	p, err = again.NextPush(10 * time.Second)
	if err != nil || p.GetId() != id {
		t.Fatalf("after the resume: push %v, %v; want the broadcast %d again", p, err, id)
	}
	if v := AdminValue(t, room, `pushgw_room_session_resume_total{event="catch_up"}`); v != 1 {
		t.Fatalf("catch_up counter %v, want 1", v)
	}
}

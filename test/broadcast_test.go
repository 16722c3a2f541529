package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// bcClient is a raw client that records the broadcasts it is given.
type bcClient struct {
	*RawClient
	name string
}

// dialBC connects to room addr as user of app (minted with secret) and
// reports last as its last broadcast seq.
func dialBC(t *testing.T, addr, app, secret, user string, last uint64) *bcClient {
	t.Helper()
	tok, err := token.Mint([]byte(secret), token.Claims{App: app, User: user, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	rc := Dial(t, addr)
	rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok, Device: "d", LastBroadcastSeq: last})
	f, m, err := rc.Read(5 * time.Second)
	if err != nil || f.Op != protocol.OpAuthReply {
		t.Fatalf("auth of %s: %s %v %v", user, f.Op, m, err)
	}
	return &bcClient{RawClient: rc, name: user}
}

// drain reads until the PONG of a fresh PING and returns the pushes before
// it: what the room had queued for this connection.
func (bc *bcClient) drain(t *testing.T) []*clientpb.Push {
	t.Helper()
	bc.Send(protocol.OpPing, nil)
	var out []*clientpb.Push
	for {
		f, m, err := bc.Read(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: drain: %v", bc.name, err)
		}
		switch f.Op {
		case protocol.OpPong:
			return out
		case protocol.OpPush:
			out = append(out, m.(*clientpb.Push))
		case protocol.OpError, protocol.OpKick:
			t.Fatalf("%s: got %s %v", bc.name, f.Op, m)
		}
	}
}

// pushesUntil reads pushes until every id in want arrived, and fails on a
// second copy of any broadcast.
func (bc *bcClient) pushesUntil(t *testing.T, timeout time.Duration, want ...uint64) map[uint64]*clientpb.Push {
	t.Helper()
	got := map[uint64]*clientpb.Push{}
	missing := func() bool {
		for _, id := range want {
			if got[id] == nil {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(timeout)
	for missing() {
		p, err := bc.NextPush(time.Until(deadline))
		if err != nil {
			t.Fatalf("%s: broadcasts %v not all received (got %v): %v", bc.name, want, keys(got), err)
		}
		if got[p.GetId()] != nil {
			t.Fatalf("%s: broadcast %d received twice", bc.name, p.GetId())
		}
		got[p.GetId()] = p
	}
	return got
}

func keys(m map[uint64]*clientpb.Push) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	return out
}

// broadcast posts body to center URL base and returns id and seq.
func (c *Cluster) broadcast(t *testing.T, base string, body map[string]any) (uint64, uint64, int64) {
	t.Helper()
	j, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", base+"/v1/broadcast", bytes.NewReader(j))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	code, out := doJSON(t, req)
	if code != 200 {
		t.Fatalf("broadcast %v: %d %v", body, code, out)
	}
	id, err := strconv.ParseUint(out["id"].(string), 10, 64)
	if err != nil {
		t.Fatalf("broadcast id %v", out["id"])
	}
	return id, uint64(out["seq"].(float64)), int64(out["expires_ms"].(float64))
}

// broadcastStatus returns GET /v1/messages/{id} of a broadcast.
func (c *Cluster) broadcastStatus(t *testing.T, id uint64) map[string]any {
	t.Helper()
	code, out := c.API("GET", "/v1/messages/"+strconv.FormatUint(id, 10), nil)
	if code != 200 || out["kind"] != "broadcast" {
		t.Fatalf("status of broadcast %d: %d %v", id, code, out)
	}
	return out
}

// A broadcast reaches every online user of the app on both rooms exactly
// once, sent through either center, and nobody of another app; acks come
// back as counts in the status.
func TestBroadcastReachesEveryOnlineUserOnce(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Centers: 2, Heartbeat: 10 * time.Second, MissedBeats: 3})
	var mine []*bcClient
	for i := 0; i < 6; i++ {
		mine = append(mine, dialBC(t, c.RoomTCP[i%2], c.App, c.Secret, "user-"+strconv.Itoa(i), 0))
	}
	var others []*bcClient
	for i := 0; i < 2; i++ {
		others = append(others, dialBC(t, c.RoomTCP[i], c.OtherApp.Name, c.OtherApp.Secret, "user-"+strconv.Itoa(i), 0))
	}
	id1, seq1, _ := c.broadcast(t, c.CenterURLs[0], map[string]any{"payload": "one", "qos": 1, "ttl": 600})
	id2, seq2, _ := c.broadcast(t, c.CenterURLs[1], map[string]any{"payload": "two", "qos": 1, "ttl": 600})
	if seq2 != seq1+1 {
		t.Fatalf("seqs %d then %d through two centers, want consecutive", seq1, seq2)
	}
	for _, cl := range mine {
		got := cl.pushesUntil(t, 15*time.Second, id1, id2)
		if p := got[id1]; string(p.GetPayload()) != "one" || p.GetBroadcastSeq() != seq1 || p.GetQos() != 1 || p.GetApp() != c.App {
			t.Fatalf("%s: broadcast 1 = %v", cl.name, p)
		}
		if p := got[id2]; string(p.GetPayload()) != "two" || p.GetBroadcastSeq() != seq2 {
			t.Fatalf("%s: broadcast 2 = %v", cl.name, p)
		}
		cl.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{id1, id2}})
	}
	for _, id := range []uint64{id1, id2} {
		Eventually(t, 20*time.Second, "broadcast "+strconv.FormatUint(id, 10)+" done on both rooms with 6 reached and 6 acked", func() bool {
			st := c.broadcastStatus(t, id)
			return st["state"] == "done" && st["rooms_total"] == float64(2) && st["reached"] == float64(6) && st["acked"] == float64(6)
		})
	}
	// Nothing more is queued for anyone: no second copy, nothing for the other app.
	for _, cl := range append(mine, others...) {
		if extra := cl.drain(t); len(extra) > 0 {
			t.Fatalf("%s got %d more pushes, first %v", cl.name, len(extra), extra[0])
		}
	}
}

// A room stopped while a broadcast goes out gets it from the sweep after
// it resumes; the other room's clients are not held up. This proves the
// sweep path, so the centers make no quick resends (-broadcast-resends 0):
// with them the resumed room would get it from one of those first
// (TestBroadcastStoppedRoomQuickResend).
func TestBroadcastStoppedRoomAfterCont(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Centers: 2, Heartbeat: 30 * time.Second, MissedBeats: 3,
		ExtraCenterArg: []string{"-redeliver-interval", "1s", "-broadcast-resends", "0"}})
	a := dialBC(t, c.RoomTCP[0], c.App, c.Secret, "on-stopped-room", 0)
	b := dialBC(t, c.RoomTCP[1], c.App, c.Secret, "on-live-room", 0)
	// Their login catch-ups are over, so only a live send or the sweep can
	// bring the broadcast.
	c.waitCatchUps(t, 0, 1)
	c.waitCatchUps(t, 1, 1)
	// Neither center has called room-1 yet, so while it is stopped no
	// call can even start: live delivery there fails for sure.
	room := RoomName(0)
	resume := c.pauseProc(t, room)
	id, _, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "while stopped", "qos": 1})
	b.pushesUntil(t, 10*time.Second, id)
	c.waitRoomCallFailed(t, 30*time.Second, id, CenterName(0), CenterName(1))
	if st := c.broadcastStatus(t, id); st["state"] != "sending" || st["rooms_done"] != float64(1) {
		t.Fatalf("status while room-1 is stopped: %v", st)
	}
	resume()
	resumed := time.Now()
	a.pushesUntil(t, 40*time.Second, id)
	t.Logf("delivered on the resumed room %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
	Eventually(t, 30*time.Second, "broadcast done on both rooms", func() bool {
		st := c.broadcastStatus(t, id)
		return st["state"] == "done" && st["reached"] == float64(2)
	})
	// It came through the sweep: room-1 was claimed again.
	for _, r := range c.broadcastStatus(t, id)["rooms"].([]any) {
		r := r.(map[string]any)
		if r["room"] == room && r["attempts"].(float64) < 1 {
			t.Fatalf("room-1 delivered without a resend: %v", r)
		}
	}
	for _, cl := range []*bcClient{a, b} {
		if extra := cl.drain(t); len(extra) > 0 {
			t.Fatalf("%s got a second copy: %v", cl.name, extra)
		}
	}
}

// A room stopped for a moment while a broadcast goes out (as a room just
// restarted is unreachable) gets it from center's quick resend soon after
// it resumes, well before the sweep would claim it: the sweep runs only
// every minute here, and the room's row was never claimed (attempts 0).
// No client gets a second copy.
func TestBroadcastStoppedRoomQuickResend(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Heartbeat: 30 * time.Second, MissedBeats: 3,
		ExtraCenterArg: []string{"-redeliver-interval", "1m"}})
	a := dialBC(t, c.RoomTCP[0], c.App, c.Secret, "on-stopped-room", 0)
	b := dialBC(t, c.RoomTCP[1], c.App, c.Secret, "on-live-room", 0)
	// Login catch-ups over: only a live send or a resend can bring it.
	c.waitCatchUps(t, 0, 1)
	c.waitCatchUps(t, 1, 1)
	// Center has not called room-1 yet: its first call must connect, and
	// the connect times out while the room is stopped (Unavailable).
	room := RoomName(0)
	resume := c.pauseProc(t, room)
	id, _, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "while briefly stopped", "qos": 1})
	sent := time.Now()
	b.pushesUntil(t, 10*time.Second, id)
	c.waitRoomCallFailed(t, 10*time.Second, id, CenterName(0))
	resume()
	resumed := time.Now()
	a.pushesUntil(t, 10*time.Second, id)
	t.Logf("delivered on the resumed room %v after SIGCONT, %v after the broadcast",
		time.Since(resumed).Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
	if since := time.Since(sent); since >= 12*time.Second {
		t.Fatalf("delivered %v after the broadcast: no sooner than the sweep would have", since)
	}
	admin := c.Procs[CenterName(0)].Admin
	Eventually(t, 10*time.Second, "the quick resend counted", func() bool {
		return ScrapeAdmin(t, admin)[`pushgw_center_broadcast_resends_total{result="ok"}`] == 1
	})
	Eventually(t, 10*time.Second, "broadcast done on both rooms", func() bool {
		st := c.broadcastStatus(t, id)
		return st["state"] == "done" && st["reached"] == float64(2)
	})
	for _, r := range c.broadcastStatus(t, id)["rooms"].([]any) {
		if r := r.(map[string]any); r["attempts"].(float64) != 0 {
			t.Fatalf("%v was claimed by the sweep; the quick resend should have delivered it", r)
		}
	}
	for _, cl := range []*bcClient{a, b} {
		if extra := cl.drain(t); len(extra) > 0 {
			t.Fatalf("%s got a second copy: %v", cl.name, extra)
		}
	}
}

// A client that was offline catches up on connect, in order, from the seq
// it reports; nothing expired, online-only or qos 0 is caught up.
func TestBroadcastCatchUp(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Centers: 2, Heartbeat: 10 * time.Second, MissedBeats: 3})
	id1, seq1, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "b1", "ttl": 600})
	_, _, exp2 := c.broadcast(t, c.CenterURL, map[string]any{"payload": "short", "ttl": 1})
	c.broadcast(t, c.CenterURL, map[string]any{"payload": "online", "online_only": true})
	id4, seq4, _ := c.broadcast(t, c.CenterURLs[1], map[string]any{"payload": "b4"})
	c.broadcast(t, c.CenterURL, map[string]any{"payload": "qos0", "qos": 0})
	// Wait on the clock until the short one has expired.
	Eventually(t, 5*time.Second, "the 1 s broadcast to expire", func() bool { return time.Now().UnixMilli() > exp2+100 })

	fresh := dialBC(t, c.RoomTCP[0], c.App, c.Secret, "new-device", 0)
	got := fresh.pushesUntil(t, 10*time.Second, id1, id4)
	if got[id1].GetBroadcastSeq() != seq1 || got[id4].GetBroadcastSeq() != seq4 {
		t.Fatalf("seqs %v", got)
	}
	if extra := fresh.drain(t); len(extra) > 0 {
		t.Fatalf("caught up on %v too (expired, online-only or qos 0)", extra)
	}

	// Order: a client reporting seq 0 gets them oldest first.
	ordered := dialBC(t, c.RoomTCP[1], c.App, c.Secret, "ordered", 0)
	p1, err := ordered.NextPush(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ordered.NextPush(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if p1.GetId() != id1 || p2.GetId() != id4 {
		t.Fatalf("caught up in order %d, %d; want %d, %d", p1.GetId(), p2.GetId(), id1, id4)
	}

	// A client that had seq 1 gets only what came after.
	back := dialBC(t, c.RoomTCP[1], c.App, c.Secret, "returning", seq1)
	if p, err := back.NextPush(10 * time.Second); err != nil || p.GetId() != id4 {
		t.Fatalf("returning client got %v, %v; want broadcast %d", p, err, id4)
	}
	if extra := back.drain(t); len(extra) > 0 {
		t.Fatalf("returning client got %v too", extra)
	}
	// A client up to date gets nothing.
	current := dialBC(t, c.RoomTCP[0], c.App, c.Secret, "current", seq4+1)
	if extra := current.drain(t); len(extra) > 0 {
		t.Fatalf("up-to-date client got %v", extra)
	}
	// Catch-up deliveries are counted in the status.
	Eventually(t, 10*time.Second, "catch-up deliveries of broadcast 4 counted", func() bool {
		return c.broadcastStatus(t, id4)["reached"] == float64(3)
	})
}

// Bad broadcast bodies get documented 4xx codes.
func TestBroadcastBadBodies(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1})
	for _, tc := range []struct {
		body        string
		status      int
		code, field string
	}{
		{`{"payload":"x","tag":""}`, 400, "INVALID_ARGUMENT", "tag"},
		{`{"payload":"x","qos":2}`, 400, "INVALID_ARGUMENT", "qos"},
		{`{"payload":"x","ttl":604801}`, 400, "INVALID_ARGUMENT", "ttl"},
		{`{"qos":1}`, 400, "INVALID_ARGUMENT", "payload"},
		{`{"payload":"x","qos":0,"online_only":false}`, 400, "INVALID_ARGUMENT", "online_only"},
		{`{"app":"` + c.OtherApp.Name + `","payload":"x"}`, 403, "FORBIDDEN", "app"},
		{`{"payload":"` + strings.Repeat("p", protocol.MaxPayloadSize+1) + `"}`, 413, "PAYLOAD_TOO_LARGE", "payload"},
	} {
		code, out := c.API("POST", "/v1/broadcast", tc.body)
		if code != tc.status || out["code"] != tc.code || out["field"] != tc.field {
			t.Errorf("%.60s: %d %v, want %d %s field %s", tc.body, code, out, tc.status, tc.code, tc.field)
		}
	}
	if code, out := c.API("GET", "/v1/broadcast", nil); code != 405 {
		t.Errorf("GET /v1/broadcast: %d %v", code, out)
	}
	if code, out := c.API("GET", "/v1/messages/12345", nil); code != 404 || out["code"] != "NOT_FOUND" {
		t.Errorf("unknown id: %d %v", code, out)
	}
}

// pauseProc SIGSTOPs process name and returns what resumes it (SIGCONT,
// once); a test that fails before resuming it resumes it at cleanup,
// before the cluster stops.
func (c *Cluster) pauseProc(t *testing.T, name string) (resume func()) {
	t.Helper()
	c.Signal(name, syscall.SIGSTOP)
	var once sync.Once
	resume = func() { once.Do(func() { c.Signal(name, syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}

// waitRoomCallFailed waits until one of centers logged that its call to a
// room with broadcast id failed.
func (c *Cluster) waitRoomCallFailed(t *testing.T, d time.Duration, id uint64, centers ...string) {
	t.Helper()
	idText := strconv.FormatUint(id, 10)
	Eventually(t, d, "a center's room call for broadcast "+idText+" to fail", func() bool {
		for _, name := range centers {
			for _, line := range strings.Split(c.Tail(name, 200), "\n") {
				if strings.Contains(line, "room broadcast failed") && strings.Contains(line, idText) {
					return true
				}
			}
		}
		return false
	})
}

package test

import (
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// nextIs reads cl's next push and fails unless it is broadcast id: a
// marker sent after the one it must not have got.
func nextIs(t *testing.T, cl *bcClient, id uint64, why string) {
	t.Helper()
	p, err := cl.NextPush(15 * time.Second)
	if err != nil || p.GetId() != id {
		t.Fatalf("%s: next push %v (%v), want broadcast %d: %s", cl.name, p, err, id, why)
	}
}

// A tag broadcast reaches exactly the tag's online members on both rooms,
// once, and no non-member (nor the same user name in another app); an
// offline member catches up on it at login, in seq order with app-wide
// broadcasts, and an offline non-member does not. Rooms ask saver about 2
// users per call, so each room's fan-out takes several membership batches
// (room-1: 7 users, two devices of one member).
func TestTagBroadcastReachesOnlyMembers(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Heartbeat: 10 * time.Second, MissedBeats: 3,
		ExtraRoomArg: []string{"-tag-check-batch", "2"}})
	if code, body := c.API("PUT", tagPath(c.App, "vip"), map[string]any{"users": []string{"m-0", "m-1", "m-2", "m-3", "m-off"}}); code != 200 {
		t.Fatalf("add members: %d %v", code, body)
	}
	var members, others []*bcClient
	for _, u := range []string{"m-0", "m-2", "m-3"} {
		members = append(members, dialBC(t, c.RoomTCP[0], c.App, c.Secret, u, 0))
	}
	members = append(members, dialBC(t, c.RoomTCP[1], c.App, c.Secret, "m-1", 0))
	second := dialDevice(t, c.RoomTCP[0], c.App, c.Secret, "m-2", "second-device")
	members = append(members, second)
	for _, u := range []string{"n-0", "n-2", "n-3", "n-4"} {
		others = append(others, dialBC(t, c.RoomTCP[0], c.App, c.Secret, u, 0))
	}
	others = append(others, dialBC(t, c.RoomTCP[1], c.App, c.Secret, "n-1", 0))
	nonMembersSameApp := len(others)
	others = append(others, dialBC(t, c.RoomTCP[0], c.OtherApp.Name, c.OtherApp.Secret, "m-0", 0))

	id, seq, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "vip only", "tag": "vip", "ttl": 600})
	if st := c.broadcastStatus(t, id); st["tag"] != "vip" {
		t.Fatalf("status of a tag broadcast without its tag: %v", st)
	}
	for _, cl := range members {
		p := cl.pushesUntil(t, 15*time.Second, id)[id]
		if string(p.GetPayload()) != "vip only" || p.GetBroadcastSeq() != seq {
			t.Fatalf("%s: tag broadcast = %v", cl.name, p)
		}
		cl.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{id}})
	}
	// Done on both rooms: every room finished its fan-out, so a push
	// queued for a non-member would precede the marker below.
	Eventually(t, 20*time.Second, "tag broadcast done on both rooms, 5 reached and 5 acked", func() bool {
		st := c.broadcastStatus(t, id)
		return st["state"] == "done" && st["rooms_total"] == float64(2) && st["reached"] == float64(5) && st["acked"] == float64(5)
	})
	marker, markerSeq, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "everyone", "ttl": 600})
	if markerSeq != seq+1 {
		t.Fatalf("app-wide seq %d after tag seq %d: tag and app broadcasts share the app's sequence", markerSeq, seq)
	}
	for _, cl := range append(members, others[:nonMembersSameApp]...) {
		nextIs(t, cl, marker, "the app-wide marker; a non-member must not get the tag broadcast first")
	}
	for _, cl := range append(members, others...) {
		if extra := cl.drain(t); len(extra) > 0 {
			t.Fatalf("%s got %d more pushes, first %v", cl.name, len(extra), extra[0])
		}
	}

	// Offline ones log in now, on either room, from seq 0.
	off := dialBC(t, c.RoomTCP[1], c.App, c.Secret, "m-off", 0)
	nextIs(t, off, id, "an offline member catches up on the tag broadcast first")
	nextIs(t, off, marker, "then the app-wide one, in seq order")
	stranger := dialBC(t, c.RoomTCP[0], c.App, c.Secret, "n-off", 0)
	nextIs(t, stranger, marker, "an offline non-member catches up on the app-wide one only")
	for _, cl := range []*bcClient{off, stranger} {
		if extra := cl.drain(t); len(extra) > 0 {
			t.Fatalf("%s caught up on %v too", cl.name, extra)
		}
	}
	Eventually(t, 10*time.Second, "the member's catch-up counted", func() bool {
		return c.broadcastStatus(t, id)["reached"] == float64(6)
	})

	// Bad tags are refused with the field named.
	for _, tag := range []any{"", "a\u0001b", 7} {
		code, body := c.API("POST", "/v1/broadcast", map[string]any{"payload": "x", "tag": tag})
		if code != 400 || body["code"] != "INVALID_ARGUMENT" || body["field"] != "tag" {
			t.Fatalf("tag %q: %d %v", tag, code, body)
		}
	}
}

// A room stopped while a tag broadcast goes out gets it from the resend
// sweep after it resumes, and then too gives it only to the tag's members.
// Center makes no quick resends here (-broadcast-resends 0), so the sweep
// is what resends.
func TestTagBroadcastSweepAfterCont(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Heartbeat: 30 * time.Second, MissedBeats: 3,
		ExtraCenterArg: []string{"-redeliver-interval", "1s", "-broadcast-resends", "0"}})
	if code, body := c.API("PUT", tagPath(c.App, "vip"), map[string]any{"users": []string{"m-stopped", "m-live"}}); code != 200 {
		t.Fatalf("add members: %d %v", code, body)
	}
	member := dialBC(t, c.RoomTCP[0], c.App, c.Secret, "m-stopped", 0)
	outsider := dialBC(t, c.RoomTCP[0], c.App, c.Secret, "n-stopped", 0)
	live := dialBC(t, c.RoomTCP[1], c.App, c.Secret, "m-live", 0)
	// Login catch-ups over: only a live send or the sweep can bring it.
	c.waitCatchUps(t, 0, 2)
	c.waitCatchUps(t, 1, 1)
	room := RoomName(0)
	resume := c.pauseProc(t, room)
	id, _, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "vip while stopped", "tag": "vip"})
	live.pushesUntil(t, 10*time.Second, id)
	c.waitRoomCallFailed(t, 30*time.Second, id, CenterName(0))
	resume()
	member.pushesUntil(t, 40*time.Second, id)
	Eventually(t, 30*time.Second, "tag broadcast done on both rooms, 2 reached", func() bool {
		st := c.broadcastStatus(t, id)
		return st["state"] == "done" && st["reached"] == float64(2)
	})
	for _, r := range c.broadcastStatus(t, id)["rooms"].([]any) {
		r := r.(map[string]any)
		if r["room"] == room && r["attempts"].(float64) < 1 {
			t.Fatalf("room-1 delivered without a resend: %v", r)
		}
	}
	marker, _, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "everyone"})
	nextIs(t, outsider, marker, "the non-member on the resumed room must not get the resent tag broadcast")
	for _, cl := range []*bcClient{member, live} {
		nextIs(t, cl, marker, "no second copy of the tag broadcast")
	}
}

// dialDevice is dialBC for a named device of user, from seq 0.
func dialDevice(t *testing.T, addr, app, secret, user, device string) *bcClient {
	t.Helper()
	tok, err := token.Mint([]byte(secret), token.Claims{App: app, User: user, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	rc := Dial(t, addr)
	rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok, Device: device})
	f, m, err := rc.Read(5 * time.Second)
	if err != nil || f.Op != protocol.OpAuthReply {
		t.Fatalf("auth of %s/%s: %s %v %v", user, device, f.Op, m, err)
	}
	return &bcClient{RawClient: rc, name: user + "/" + device}
}

package test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/txcheck"
)

// prepareTxBroadcast prepares a transactional broadcast and returns the tx
// id and the broadcast id it will have.
func (c *Cluster) prepareTxBroadcast(t *testing.T, payload string) (string, uint64) {
	return c.prepareTxBroadcastChecked(t, payload, "", txNoCheck)
}

func (c *Cluster) prepareTxBroadcastChecked(t *testing.T, payload, ikey string, checkAfter int) (string, uint64) {
	t.Helper()
	code, out := c.API("POST", "/v1/tx", map[string]any{"target": map[string]any{"kind": "broadcast"}, "payload": payload,
		"ttl": 600, "check_timeout": checkAfter, "idempotency_key": ikey})
	if code != 200 || out["state"] != "prepared" || out["target"].(map[string]any)["kind"] != "broadcast" {
		t.Fatalf("prepare broadcast: %d %v", code, out)
	}
	bid, err := strconv.ParseUint(out["broadcast_id"].(string), 10, 64)
	if err != nil || bid == 0 {
		t.Fatalf("prepare broadcast: broadcast_id %v", out["broadcast_id"])
	}
	return out["id"].(string), bid
}

// A committed transactional broadcast reaches every online client of the
// app on both rooms once, however often it is committed; a rolled-back one
// reaches nobody (checked once a later broadcast arrived, since broadcasts
// go out in order) and is never caught up; a client connecting after the
// commit catches the committed one up.
func TestTxBroadcast(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Heartbeat: 10 * time.Second, MissedBeats: 3})
	var online []*bcClient
	for i := 0; i < 4; i++ {
		online = append(online, dialBC(t, c.RoomTCP[i%2], c.App, c.Secret, "user-"+strconv.Itoa(i), 0))
	}
	other := dialBC(t, c.RoomTCP[0], c.OtherApp.Name, c.OtherApp.Secret, "user-0", 0)

	commitID, commitBID := c.prepareTxBroadcast(t, "commit-me")
	rollID, rollBID := c.prepareTxBroadcast(t, "roll-me")
	if code, out := c.API("GET", "/v1/messages/"+strconv.FormatUint(commitBID, 10), nil); code != 404 {
		t.Fatalf("a prepared broadcast is visible: %d %v", code, out)
	}

	var seq float64
	for i := 0; i < 3; i++ {
		code, out := c.API("POST", "/v1/tx/"+commitID+"/commit", nil)
		if code != 200 || out["state"] != "committed" || out["broadcast_id"] != strconv.FormatUint(commitBID, 10) {
			t.Fatalf("commit %d: %d %v", i, code, out)
		}
		if s, _ := out["seq"].(float64); s == 0 || (seq != 0 && s != seq) {
			t.Fatalf("commit %d answered seq %v, first %v", i, out["seq"], seq)
		} else {
			seq = s
		}
	}
	if code, out := c.API("POST", "/v1/tx/"+rollID+"/rollback", nil); code != 200 || out["state"] != "rolled_back" {
		t.Fatalf("rollback: %d %v", code, out)
	}
	if code, out := c.API("POST", "/v1/tx/"+rollID+"/commit", nil); code != 409 || out["code"] != "TX_ALREADY_DECIDED" {
		t.Fatalf("commit after rollback: %d %v", code, out)
	}

	for _, cl := range online {
		p := cl.pushesUntil(t, 15*time.Second, commitBID)[commitBID]
		if string(p.GetPayload()) != "commit-me" || float64(p.GetBroadcastSeq()) != seq || p.GetApp() != c.App {
			t.Fatalf("%s: committed broadcast = %v", cl.name, p)
		}
	}
	// Broadcasts of an app go out in seq order: once the control one
	// arrived, a leaked rollback (or a second copy) would have too.
	ctl, _, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "control", "ttl": 600})
	for _, cl := range online {
		if got := cl.pushesUntil(t, 15*time.Second, ctl); len(got) != 1 {
			t.Fatalf("%s: got %v before the control broadcast, want nothing else (rolled back: %d)", cl.name, keys(got), rollBID)
		}
		if extra := cl.drain(t); len(extra) > 0 {
			t.Fatalf("%s: got %d more pushes, first %v", cl.name, len(extra), extra[0])
		}
	}
	if extra := other.drain(t); len(extra) > 0 {
		t.Fatalf("the other app's client got %v", extra[0])
	}
	Eventually(t, 20*time.Second, "committed broadcast done on both rooms, 4 reached", func() bool {
		st := c.broadcastStatus(t, commitBID)
		return st["state"] == "done" && st["rooms_total"] == float64(2) && st["reached"] == float64(4)
	})
	if code, out := c.API("GET", "/v1/messages/"+strconv.FormatUint(rollBID, 10), nil); code != 404 {
		t.Fatalf("a rolled-back broadcast is visible: %d %v", code, out)
	}

	// A device connecting after the commit catches up on it and the
	// control one, in order, and never on the rolled-back one.
	late := dialBC(t, c.RoomTCP[1], c.App, c.Secret, "late", 0)
	p1, err := late.NextPush(10 * time.Second)
	if err != nil || p1.GetId() != commitBID || string(p1.GetPayload()) != "commit-me" {
		t.Fatalf("late client first got %v, %v; want broadcast %d", p1, err, commitBID)
	}
	if p2, err := late.NextPush(10 * time.Second); err != nil || p2.GetId() != ctl {
		t.Fatalf("late client then got %v, %v; want control %d", p2, err, ctl)
	}
	if extra := late.drain(t); len(extra) > 0 {
		t.Fatalf("late client got %v too", extra[0])
	}
}

// Check-back decides broadcast records too, and a room that missed the
// committed broadcast (stopped while it went out) gets it from the
// broadcast sweep: the commit wrote its progress row, as it does for a
// center that dies right after the commit. Center makes no quick resends
// here (-broadcast-resends 0), so the sweep is what resends.
func TestTxBroadcastCheckBackAndSweep(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Heartbeat: txHeartbeat, ExtraCenterArg: append(append([]string(nil), txCenterArgs...),
		"-redeliver-interval", "1s", "-broadcast-resends", "0")})
	biz := newBusiness(t, c.Secret, func(r *txcheck.Request) string {
		if r.TargetKind != "broadcast" || len(r.Users) != 0 {
			t.Errorf("check of %s: target_kind %q users %v", r.TxID, r.TargetKind, r.Users)
		}
		if strings.HasPrefix(r.IdempotencyKey, "roll-") {
			return "ROLLBACK"
		}
		return "COMMIT"
	})
	c.setCheck(t, c.mainApp(), biz.srv.URL)
	a := dialBC(t, c.RoomTCP[0], c.App, c.Secret, "on-stopped-room", 0)
	b := dialBC(t, c.RoomTCP[1], c.App, c.Secret, "on-live-room", 0)
	c.waitCatchUps(t, 0, 1)
	c.waitCatchUps(t, 1, 1)
	room := RoomName(0)
	resume := c.pauseProc(t, room)
	commitID, commitBID := c.prepareTxBroadcastChecked(t, "by check-back", "commit-1", 1)
	rollID, rollBID := c.prepareTxBroadcastChecked(t, "rolled back by check-back", "roll-1", 1)
	Eventually(t, 20*time.Second, "both records decided by check-back", func() bool {
		cs, rs := c.txState(t, c.APIKey, commitID), c.txState(t, c.APIKey, rollID)
		return cs["state"] == "committed" && cs["decided_by"] == "check-back" && rs["state"] == "rolled_back"
	})
	if p := b.pushesUntil(t, 10*time.Second, commitBID)[commitBID]; string(p.GetPayload()) != "by check-back" {
		t.Fatalf("live room client got %v", p)
	}
	// Resume only once the live call gave up, so only the sweep can bring it.
	c.waitRoomCallFailed(t, 30*time.Second, commitBID, CenterName(0))
	resume()
	a.pushesUntil(t, 40*time.Second, commitBID)
	Eventually(t, 30*time.Second, "committed broadcast done on both rooms", func() bool {
		st := c.broadcastStatus(t, commitBID)
		return st["state"] == "done" && st["reached"] == float64(2)
	})
	for _, r := range c.broadcastStatus(t, commitBID)["rooms"].([]any) {
		if r := r.(map[string]any); r["room"] == room && r["attempts"].(float64) < 1 {
			t.Fatalf("%s delivered without a resend by the sweep: %v", room, r)
		}
	}
	ctl, _, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "control", "ttl": 600})
	for _, cl := range []*bcClient{a, b} {
		if got := cl.pushesUntil(t, 15*time.Second, ctl); len(got) != 1 {
			t.Fatalf("%s: got %v before the control broadcast (rolled back: %d)", cl.name, keys(got), rollBID)
		}
		if extra := cl.drain(t); len(extra) > 0 {
			t.Fatalf("%s: got %d more pushes, first %v", cl.name, len(extra), extra[0])
		}
	}
}

// A committed transaction of target kind tag reaches the tag's online
// members once and no other client; an offline member catches it up on
// connect, a non-member never gets it.
func TestTxTagBroadcast(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Heartbeat: 10 * time.Second, MissedBeats: 3})
	if code, body := c.API("PUT", tagPath(c.App, "vip"), map[string]any{"users": []string{"m-0", "m-1", "m-off"}}); code != 200 {
		t.Fatalf("tag add: %d %v", code, body)
	}
	members := []*bcClient{dialBC(t, c.RoomTCP[0], c.App, c.Secret, "m-0", 0), dialBC(t, c.RoomTCP[1], c.App, c.Secret, "m-1", 0)}
	others := []*bcClient{dialBC(t, c.RoomTCP[0], c.App, c.Secret, "n-0", 0), dialBC(t, c.RoomTCP[1], c.App, c.Secret, "n-1", 0)}

	code, out := c.API("POST", "/v1/tx", map[string]any{"target": map[string]any{"kind": "tag", "tag": "vip"}, "payload": "for-vips",
		"ttl": 600, "check_timeout": txNoCheck})
	if code != 200 || out["state"] != "prepared" || out["target"].(map[string]any)["tag"] != "vip" {
		t.Fatalf("prepare tag tx: %d %v", code, out)
	}
	id := out["id"].(string)
	bid, err := strconv.ParseUint(out["broadcast_id"].(string), 10, 64)
	if err != nil {
		t.Fatalf("broadcast_id %v", out["broadcast_id"])
	}
	for i := 0; i < 2; i++ {
		if code, out := c.API("POST", "/v1/tx/"+id+"/commit", nil); code != 200 || out["state"] != "committed" {
			t.Fatalf("commit %d: %d %v", i, code, out)
		}
	}
	for _, cl := range members {
		if p := cl.pushesUntil(t, 15*time.Second, bid)[bid]; string(p.GetPayload()) != "for-vips" {
			t.Fatalf("%s: tag broadcast = %v", cl.name, p)
		}
	}
	// Broadcasts go out in seq order: once the control one arrived, a
	// non-member would have had the tag broadcast before it.
	ctl, _, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "control", "ttl": 600})
	for _, cl := range append(others, members...) {
		if got := cl.pushesUntil(t, 15*time.Second, ctl); len(got) != 1 {
			t.Fatalf("%s: got %v before the control broadcast, want only it", cl.name, keys(got))
		}
		if extra := cl.drain(t); len(extra) > 0 {
			t.Fatalf("%s: got %d more pushes, first %v", cl.name, len(extra), extra[0])
		}
	}
	late := dialBC(t, c.RoomTCP[1], c.App, c.Secret, "m-off", 0)
	nextIs(t, late, bid, "offline member catches the tag transaction up")
	nextIs(t, late, ctl, "then the control broadcast")
	stranger := dialBC(t, c.RoomTCP[0], c.App, c.Secret, "n-late", 0)
	nextIs(t, stranger, ctl, "a late non-member gets only the control broadcast")
}

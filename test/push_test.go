package test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// One cluster for the delivery tests; each test uses its own users.
func TestDelivery(t *testing.T) {
	c := StartCluster(t, Options{})

	t.Run("qos1 online is delivered, acked, then gone from MySQL and Redis", func(t *testing.T) {
		rc := Dial(t, c.RoomTCP[0])
		rc.Auth(c.Token("online-1", "phone", time.Hour))
		id := c.Push("online-1", 1, time.Hour, "hello")
		p, err := rc.NextPush(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if p.Id != id || string(p.Payload) != "hello" || p.Qos != 1 || p.App != c.App {
			t.Fatalf("push = %+v, want id %d payload hello", p, id)
		}
		if !c.inMySQL(t, id) {
			t.Fatalf("message %d not in MySQL before ack", id)
		}
		rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{id}})
		Eventually(t, 10*time.Second, "message gone from MySQL and Redis", func() bool {
			return !c.inMySQL(t, id) && !c.inRedis(t, id)
		})
		if s := c.Status(id); s != "acked" {
			t.Fatalf("status = %q, want acked", s)
		}
	})

	t.Run("largest accepted payload fits a default-size frame", func(t *testing.T) {
		big := strings.Repeat("x", protocol.MaxPayloadSize)
		id := c.Push("big-1", 1, time.Hour, big)
		rc := Dial(t, c.RoomTCP[0])
		rc.Auth(c.Token("big-1", "phone", time.Hour))
		p, err := rc.NextPush(10 * time.Second)
		if err != nil || p.Id != id || len(p.Payload) != len(big) {
			t.Fatalf("push of %d bytes: %v, %v", len(big), p.GetId(), err)
		}
		code, out := c.API("POST", "/v1/push", map[string]any{"app": c.App, "user": "big-1", "payload": big + "y", "qos": 1})
		if code != 413 {
			t.Fatalf("payload one byte over the limit: %d %v", code, out)
		}
	})

	t.Run("offline user gets the message on connect", func(t *testing.T) {
		id := c.Push("offline-1", 1, time.Hour, "while you were away")
		if s := c.Status(id); s != "stored" {
			t.Fatalf("status before connect = %q, want stored", s)
		}
		rc := Dial(t, c.RoomTCP[1])
		rc.Auth(c.Token("offline-1", "phone", time.Hour))
		p, err := rc.NextPush(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if p.Id != id {
			t.Fatalf("got %d, want %d", p.Id, id)
		}
		rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{id}})
		Eventually(t, 10*time.Second, "acked", func() bool { return c.Status(id) == "acked" })
	})

	t.Run("expired message never arrives", func(t *testing.T) {
		id := c.Push("expire-1", 1, time.Second, "too late")
		time.Sleep(2500 * time.Millisecond)
		rc := Dial(t, c.RoomTCP[0])
		rc.Auth(c.Token("expire-1", "phone", time.Hour))
		if p, err := rc.NextPush(2 * time.Second); err == nil {
			t.Fatalf("expired message delivered: %+v", p)
		}
		Eventually(t, 10*time.Second, "swept to expired", func() bool { return c.Status(id) == "expired" })
		if c.inMySQL(t, id) || c.inRedis(t, id) {
			t.Fatal("expired message still stored")
		}
	})

	t.Run("qos0 to offline user is not stored", func(t *testing.T) {
		code, out := c.API("POST", "/v1/push", map[string]any{"app": c.App, "user": "q0-offline", "payload": "typing", "qos": 0})
		if code != 200 {
			t.Fatalf("push qos0: %d %v", code, out)
		}
		id, _ := strconv.ParseUint(out["id"].(string), 10, 64)
		if c.inMySQL(t, id) || c.inRedis(t, id) {
			t.Fatal("qos0 message was stored")
		}
		rc := Dial(t, c.RoomTCP[0])
		rc.Auth(c.Token("q0-offline", "phone", time.Hour))
		if p, err := rc.NextPush(1500 * time.Millisecond); err == nil {
			t.Fatalf("qos0 message delivered later: %+v", p)
		}
	})

	t.Run("qos0 to online user arrives", func(t *testing.T) {
		rc := Dial(t, c.RoomTCP[1])
		rc.Auth(c.Token("q0-online", "phone", time.Hour))
		waitSession(t, c, "q0-online", 1)
		code, out := c.API("POST", "/v1/push", map[string]any{"app": c.App, "user": "q0-online", "payload": "typing", "qos": 0})
		if code != 200 {
			t.Fatalf("push qos0: %d %v", code, out)
		}
		p, err := rc.NextPush(5 * time.Second)
		if err != nil || p.Qos != 0 || string(p.Payload) != "typing" {
			t.Fatalf("qos0 push = %+v, %v", p, err)
		}
	})

	t.Run("every device of a user gets a unicast", func(t *testing.T) {
		a := Dial(t, c.RoomTCP[0])
		a.Auth(c.Token("multi-dev", "phone", time.Hour))
		b := Dial(t, c.RoomTCP[1])
		b.Auth(c.Token("multi-dev", "laptop", time.Hour))
		waitSession(t, c, "multi-dev", 2)
		id := c.Push("multi-dev", 1, time.Hour, "both")
		for _, rc := range []*RawClient{a, b} {
			p, err := rc.NextPush(10 * time.Second)
			if err != nil || p.Id != id {
				t.Fatalf("push = %+v, %v; want %d", p, err, id)
			}
		}
	})

	t.Run("multi push reaches each user", func(t *testing.T) {
		users := []string{"m-1", "m-2", "m-3"}
		var conns []*RawClient
		for i, u := range users {
			rc := Dial(t, c.RoomTCP[i%2])
			rc.Auth(c.Token(u, "d", time.Hour))
			conns = append(conns, rc)
		}
		for _, u := range users {
			waitSession(t, c, u, 1)
		}
		code, out := c.API("POST", "/v1/push/multi", map[string]any{"app": c.App, "users": users, "payload": "all", "qos": 1, "ttl": 60})
		if code != 200 {
			t.Fatalf("multi: %d %v", code, out)
		}
		idsOut := out["ids"].(map[string]any)
		for i, u := range users {
			want, _ := strconv.ParseUint(idsOut[u].(string), 10, 64)
			p, err := conns[i].NextPush(10 * time.Second)
			if err != nil || p.Id != want {
				t.Fatalf("%s: push = %+v, %v; want %d", u, p, err, want)
			}
		}
	})

	t.Run("kick closes the session", func(t *testing.T) {
		rc := Dial(t, c.RoomTCP[0])
		rc.Auth(c.Token("kick-me", "phone", time.Hour))
		waitSession(t, c, "kick-me", 1)
		code, out := c.API("POST", "/v1/kick", map[string]any{"app": c.App, "user": "kick-me", "reason": "test"})
		if code != 200 {
			t.Fatalf("kick: %d %v", code, out)
		}
		for {
			f, _, err := rc.Read(5 * time.Second)
			if err != nil {
				t.Fatalf("want KICK, got %v", err)
			}
			if f.Op == protocol.OpKick {
				break
			}
		}
		rc.ExpectClosed()
		waitSession(t, c, "kick-me", 0)
	})
}

func waitSession(t *testing.T, c *Cluster, user string, n int) {
	t.Helper()
	Eventually(t, 10*time.Second, "sessions of "+user+" = "+strconv.Itoa(n), func() bool {
		code, out := c.API("GET", "/v1/apps/"+c.App+"/users/"+user+"/sessions", nil)
		if code != 200 {
			return false
		}
		s, _ := out["sessions"].([]any)
		return len(s) == n
	})
}

func (c *Cluster) inMySQL(t *testing.T, id uint64) bool {
	t.Helper()
	var n int
	if err := c.DB().QueryRow("SELECT COUNT(*) FROM messages WHERE id = ?", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// inRedis reports whether any key of the cluster's Redis DB mentions id,
// whatever layout saver uses for its inbox.
func (c *Cluster) inRedis(t *testing.T, id uint64) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sid := strconv.FormatUint(id, 10)
	found := false
	// Every master of a Redis Cluster: SCAN sees one node's keys only.
	err := c.ForEachRedis(ctx, func(ctx context.Context, rdb *redis.Client) error {
		iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			if containsWord(key, sid) {
				found = true
				continue
			}
			switch rdb.Type(ctx, key).Val() {
			case "zset":
				found = found || rdb.ZScore(ctx, key, sid).Err() == nil
			case "hash":
				found = found || rdb.HExists(ctx, key, sid).Val()
			case "set":
				found = found || rdb.SIsMember(ctx, key, sid).Val()
			}
		}
		return iter.Err()
	})
	if err != nil {
		t.Fatalf("scan Redis for %d: %v", id, err)
	}
	return found
}

func containsWord(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i:i+len(w)] == w && (i == 0 || !isDigit(s[i-1])) && (i+len(w) == len(s) || !isDigit(s[i+len(w)])) {
			return true
		}
	}
	return false
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// DESIGN: a message center acknowledged survives the loss of Redis's data.
// Sessions and inboxes vanish; the rooms put their sessions back at the next
// refresh and pull what was stored meanwhile, so an online client gets its
// message without reconnecting.
func TestRedisDataLoss(t *testing.T) {
	// No periodic refresh and no sweep within the test: only the room
	// seeing register's epoch change (services/room/epoch.go) can put the
	// session back and pull the message.
	c := StartCluster(t, Options{Rooms: 1, ExtraRoomArg: []string{"-session-refresh", "1h"}, ExtraCenterArg: noSweep})
	rc := Dial(t, c.RoomTCP[0])
	rc.Auth(c.Token("survivor", "phone", time.Hour))
	stop := keepPinging(t, rc, 300*time.Millisecond)
	defer stop()
	waitSession(t, c, "survivor", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ForEachRedis(ctx, func(ctx context.Context, rdb *redis.Client) error { return rdb.FlushDB(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	id := c.Push("survivor", 1, time.Hour, "after the flood")
	p, err := rc.NextPush(20 * time.Second)
	if err != nil || p.Id != id {
		t.Fatalf("push after Redis lost its data = %+v, %v; want %d", p, err, id)
	}
	Eventually(t, 10*time.Second, "the room saw register's epoch change", func() bool {
		return c.RoomsValue(t, "pushgw_room_register_epoch_changes_total") >= 1
	})
	rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{id}})
	Eventually(t, 10*time.Second, "acked", func() bool { return c.Status(id) == "acked" })
	waitSession(t, c, "survivor", 1)
}

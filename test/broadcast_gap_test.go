package test

import (
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// dialGaps is dialBC reporting broadcast_gaps too (docs/protocol.md
// §10.1).
func dialGaps(t *testing.T, addr, app, secret, user string, last, gaps uint64) *bcClient {
	t.Helper()
	tok, err := token.Mint([]byte(secret), token.Claims{App: app, User: user, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	rc := Dial(t, addr)
	rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok, Device: "d", LastBroadcastSeq: last, BroadcastGaps: gaps})
	f, m, err := rc.Read(5 * time.Second)
	if err != nil || f.Op != protocol.OpAuthReply {
		t.Fatalf("auth of %s: %s %v %v", user, f.Op, m, err)
	}
	return &bcClient{RawClient: rc, name: user}
}

// waitCatchUps waits until room i ran n login catch-ups to the end.
func (c *Cluster) waitCatchUps(t *testing.T, i, n int) {
	t.Helper()
	admin := c.Procs[RoomName(i)].Admin
	Eventually(t, 10*time.Second, RoomName(i)+"'s catch-ups to finish", func() bool {
		return ScrapeAdmin(t, admin)[`pushgw_room_broadcast_catchups_total{result="ok"}`] >= float64(n)
	})
}

// The fault run's lost broadcast: a client handled broadcast k+1 but not
// k (center's call to its room failed for k), then moved rooms. Its
// report, last k+1 with the gap bit of k, gets k from the other room's
// catch-up, once, and nothing it had; the same report without the gap
// (an old client) gets nothing, as before.
func TestBroadcastGapCaughtUpOnOtherRoom(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Heartbeat: 10 * time.Second, MissedBeats: 3})
	a := dialGaps(t, c.RoomTCP[0], c.App, c.Secret, "mover", 0, 0)
	c.waitCatchUps(t, 0, 1)
	idK, seqK, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "k", "qos": 1, "ttl": 600})
	idK1, seqK1, _ := c.broadcast(t, c.CenterURL, map[string]any{"payload": "k+1", "qos": 1, "ttl": 600})
	if seqK1 != seqK+1 {
		t.Fatalf("seqs %d then %d, want consecutive", seqK, seqK1)
	}
	// Only k+1 is handled (acked); k counts as lost on the way.
	a.pushesUntil(t, 15*time.Second, idK, idK1)
	a.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{idK1}})
	a.Ping()
	a.Conn.Close()

	b := dialGaps(t, c.RoomTCP[1], c.App, c.Secret, "mover", seqK1, 1) // bit 0: seq k+1-1
	p, err := b.NextPush(10 * time.Second)
	if err != nil {
		t.Fatalf("broadcast k not caught up: %v", err)
	}
	if p.GetId() != idK || p.GetBroadcastSeq() != seqK || string(p.GetPayload()) != "k" {
		t.Fatalf("caught up on %v, want broadcast %d (seq %d)", p, idK, seqK)
	}
	c.waitCatchUps(t, 1, 1)
	if extra := b.drain(t); len(extra) > 0 {
		t.Fatalf("got %d more pushes after k, first %v", len(extra), extra[0])
	}
	b.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{idK}})

	old := dialGaps(t, c.RoomTCP[1], c.App, c.Secret, "old-client", seqK1, 0)
	c.waitCatchUps(t, 1, 2)
	if extra := old.drain(t); len(extra) > 0 {
		t.Fatalf("a report without gaps got %d pushes, first %v", len(extra), extra[0])
	}
}

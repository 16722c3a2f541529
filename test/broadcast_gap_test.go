package test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/sdk"
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

// The same with the SDK end to end: its handler fails broadcast k once
// (the app could not handle it; nothing redelivers a broadcast on the
// connection), handles k+1, and its room dies. On the other room the
// SDK's AUTH reports k as a gap and k is handled there, once; k+1 is not
// sent again.
func TestBroadcastGapCaughtUpBySDK(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Heartbeat: 10 * time.Second, MissedBeats: 3})
	var (
		mu       sync.Mutex
		tries    = map[string]int{}
		handled  = map[string]int{}
		endpoint string
	)
	cl, err := sdk.New(sdk.Config{
		DispatcherURL: c.DispatcherURL,
		App:           c.App, User: "sdk-gap", Device: "phone",
		TokenFunc: func(context.Context) (string, error) { return c.Token("sdk-gap", "phone", time.Hour), nil },
		Handler: func(_ context.Context, m *sdk.Message) error {
			mu.Lock()
			defer mu.Unlock()
			p := string(m.Payload)
			tries[p]++
			if p == "k" && tries[p] == 1 {
				return errors.New("app failed on k")
			}
			handled[p]++
			return nil
		},
		OnState: func(st sdk.State, ep string) {
			mu.Lock()
			if st == sdk.StateConnected {
				endpoint = ep
			} else if endpoint == ep {
				endpoint = ""
			}
			mu.Unlock()
		},
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer ccancel()
		_ = cl.Close(cctx)
		<-done
	})
	at := func() string {
		mu.Lock()
		defer mu.Unlock()
		return endpoint
	}
	count := func(m map[string]int, p string) int {
		mu.Lock()
		defer mu.Unlock()
		return m[p]
	}
	Eventually(t, 20*time.Second, "SDK connected", func() bool { return at() != "" })
	first := at()
	room := 0
	if c.RoomTCP[1] == first {
		room = 1
	}
	c.waitCatchUps(t, room, 1)

	c.broadcast(t, c.CenterURL, map[string]any{"payload": "k", "qos": 1, "ttl": 600})
	c.broadcast(t, c.CenterURL, map[string]any{"payload": "k+1", "qos": 1, "ttl": 600})
	Eventually(t, 15*time.Second, "k tried and k+1 handled live", func() bool {
		return count(tries, "k") == 1 && count(handled, "k+1") == 1
	})
	c.Kill(RoomName(room))
	Eventually(t, 30*time.Second, "SDK on the other room", func() bool { e := at(); return e != "" && e != first })
	Eventually(t, 15*time.Second, "k caught up on the other room", func() bool { return count(handled, "k") == 1 })
	c.waitCatchUps(t, 1-room, 1)
	if n := count(tries, "k+1"); n != 1 {
		t.Fatalf("k+1 reached the handler %d times", n)
	}
	if st := cl.Stats(); st.Redelivered != 0 {
		t.Fatalf("stats %+v: the room sent a handled broadcast again", st)
	}
	if n := count(tries, "k"); n != 2 {
		t.Fatalf("k reached the handler %d times, want 2 (failed, then caught up)", n)
	}
}

package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

func TestMarkSeen(t *testing.T) {
	var seq, mask uint64
	mask = seenWindowMs // logged in with last seq 0
	steps := []struct {
		seq  uint64
		want bool
	}{
		{0, false}, {5, true}, {5, false}, {3, true}, {4, true}, {3, false}, {6, true},
		{2, true}, {1, true}, {1, false},
		{100, true}, {99, true}, {37, true}, {36, false}, // 36 is 64 below 100: out of the window, counted as given
		{70, true}, {70, false}, {200, true}, {100, false},
	}
	for i, st := range steps {
		if got := markSeen(&seq, &mask, st.seq); got != st.want {
			t.Fatalf("step %d: markSeen(%d) = %v, want %v (bseq %d mask %x)", i, st.seq, got, st.want, seq, mask)
		}
	}
	// Logged in with last seq 10: 10 and below count as given.
	seq, mask = 10, seenWindowMs
	if markSeen(&seq, &mask, 9) || markSeen(&seq, &mask, 10) || !markSeen(&seq, &mask, 12) || !markSeen(&seq, &mask, 11) || markSeen(&seq, &mask, 9) {
		t.Fatal("login watermark not honoured")
	}
}

// Many writers (live fan-outs, resends, a catch-up) racing on one
// connection give each seq exactly once.
func TestClaimConcurrentOnce(t *testing.T) {
	var l seenLocks
	s := &session{id: 7}
	l.login(s, 0, 0)
	if _, def := l.claim(s, 1, true); !def {
		t.Fatal("live broadcast not deferred during catch-up")
	}
	if send, _ := l.claim(s, 1, false); !send {
		t.Fatal("catch-up could not give seq 1")
	}
	l.caughtUp(s)
	const writers, seqs = 8, 60
	var mu sync.Mutex
	count := map[uint64]int{}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < seqs; i++ {
				seq := uint64(2 + (i*7+w*13)%seqs) // each writer in its own order
				if send, _ := l.claim(s, seq, w%2 == 0); send {
					mu.Lock()
					count[seq]++
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	for seq := uint64(2); seq < 2+seqs; seq++ {
		if count[seq] != 1 {
			t.Fatalf("seq %d given %d times", seq, count[seq])
		}
	}
}

func TestRoomServiceBroadcast(t *testing.T) {
	forEachEngine(t, testRoomServiceBroadcast)
}

// testRoomServiceBroadcast fans out through one engine.
func testRoomServiceBroadcast(t *testing.T, engine string) {
	// No saver here: the catch-up read fails and gives up at once.
	e := startEnv(t, engine, func(c *config) { c.noCatchUpRetry = true })
	cc, err := grpc.NewClient("passthrough:///"+e.cfg.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rc := internalpb.NewRoomClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var a []*tclient
	for _, u := range []string{"u1", "u2", "u3"} {
		c := e.dial()
		c.auth(e.token("appA", testSecretA, u, "", time.Hour), "")
		a = append(a, c)
	}
	b := e.dial()
	b.auth(e.token("appB", testSecretB, "u1", "", time.Hour), "")
	waitCaughtUp(t, e, 4)

	bcast := &internalpb.Broadcast{Id: 777, App: "appA", Seq: 3, Payload: []byte("all"), Qos: 1}
	rep, err := rc.Broadcast(ctx, &internalpb.RoomBroadcastRequest{Broadcast: bcast})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetReached() != 3 || rep.GetDeferred() != 0 {
		t.Fatalf("reply %v, want 3 reached", rep)
	}
	for i, c := range a {
		f, m := c.read()
		p, ok := m.(*clientpb.Push)
		if f.Op != protocol.OpPush || !ok || p.GetId() != 777 || p.GetBroadcastSeq() != 3 || string(p.GetPayload()) != "all" {
			t.Fatalf("client %d got %s %v", i, f.Op, m)
		}
	}
	// A resend reaches nobody again.
	if rep, err = rc.Broadcast(ctx, &internalpb.RoomBroadcastRequest{Broadcast: bcast}); err != nil || rep.GetReached() != 0 {
		t.Fatalf("resend: %v %v", rep, err)
	}
	// appB's client got nothing: its next frame is the PONG.
	b.ping(5)
	a[0].ping(6)

	// An ACK of the broadcast is counted, not sent to saver per recipient.
	a[0].write(protocol.OpAck, 0, &clientpb.Ack{Ids: []uint64{777}})
	a[0].ping(7)
	// With no saver the flush puts the count back, so it settles at 1.
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.srv.r.bc.mu.RLock()
		acked := e.srv.r.bc.byID[777].acked.Load()
		e.srv.r.bc.mu.RUnlock()
		if acked == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acked counter %d, want 1", acked)
		}
		time.Sleep(10 * time.Millisecond)
	}

	for name, bad := range map[string]*internalpb.Broadcast{
		"no seq":  {Id: 1, App: "appA"},
		"no app":  {Id: 1, Seq: 1},
		"qos 2":   {Id: 1, App: "appA", Seq: 1, Qos: 2},
		"bad tag": {Id: 1, App: "appA", Seq: 1, Tag: "a\x01b"},
		"large":   {Id: 1, App: "appA", Seq: 1, Payload: make([]byte, testMaxBody)},
	} {
		_, err := rc.Broadcast(ctx, &internalpb.RoomBroadcastRequest{Broadcast: bad})
		if c := status.Code(err); c != codes.InvalidArgument && c != codes.Unimplemented {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// waitCaughtUp waits until n authenticated sessions finished their
// catch-up.
func waitCaughtUp(t *testing.T, e *testEnv, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		done := 0
		e.srv.r.hub.Range(func(s *session) {
			if s.isAuthed() && !e.srv.r.bc.seen.catching(s) {
				done++
			}
		})
		if done >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sessions caught up", done, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Broadcast gaps (docs/protocol.md §10.1): a client that reports
// last_broadcast_seq k+1 with broadcast_gaps bit 0 lacks k; the login
// catch-up gives it k, and not k+1 nor anything at or below k+1 it has.

// storedBroadcastSaver is a recSaver whose catch-ups answer, like saver,
// the stored broadcasts of the app after the asked seq; noBatch makes it a
// saver older than CatchUpBatch (the single-call path).
type storedBroadcastSaver struct {
	*recSaver
	noBatch bool
	stored  []*internalpb.Broadcast // ascending seq
}

func (s *storedBroadcastSaver) after(req *internalpb.CatchUpRequest) []*internalpb.Broadcast {
	var out []*internalpb.Broadcast
	for _, b := range s.stored {
		if b.GetApp() == req.GetApp() && b.GetSeq() > req.GetAfterSeq() {
			out = append(out, b)
		}
	}
	return out
}

func (s *storedBroadcastSaver) CatchUp(_ context.Context, req *internalpb.CatchUpRequest) (*internalpb.CatchUpReply, error) {
	return &internalpb.CatchUpReply{Broadcasts: s.after(req)}, nil
}

func (s *storedBroadcastSaver) CatchUpBatch(_ context.Context, req *internalpb.CatchUpBatchRequest) (*internalpb.CatchUpBatchReply, error) {
	if s.noBatch {
		return nil, status.Error(codes.Unimplemented, "method CatchUpBatch not implemented")
	}
	rep := &internalpb.CatchUpBatchReply{}
	for _, r := range req.GetRequests() {
		e := &internalpb.CatchUpBatchEntry{}
		for _, b := range s.after(r) {
			e.Broadcasts = append(e.Broadcasts, uint32(len(rep.Broadcasts)))
			rep.Broadcasts = append(rep.Broadcasts, b)
		}
		rep.Entries = append(rep.Entries, e)
	}
	return rep, nil
}

// gapEnv starts a room whose saver stores broadcasts 4, 5 and 6 of app.
func gapEnv(t *testing.T, engine string, noBatch bool, app string) *testEnv {
	e := startEnv(t, engine, nil)
	e.putVendorApps(map[string]string{"main": "acme", "mail": "acme"})
	s := &storedBroadcastSaver{recSaver: &recSaver{users: map[string]int{}, backlog: map[string][]*internalpb.Message{}}, noBatch: noBatch}
	for seq := uint64(4); seq <= 6; seq++ {
		s.stored = append(s.stored, &internalpb.Broadcast{Id: 100 + seq, App: app, Seq: seq, Payload: []byte(fmt.Sprint(seq)), Qos: 1})
	}
	serveSaver(t, e, s)
	return e
}

// catchUpsOK waits until n catch-ups ran their last read.
func catchUpsOK(t *testing.T, e *testEnv, n int) {
	t.Helper()
	waitFor(t, "catch-ups done", func() bool {
		return metricValue(t, e.srv.r.m.catchUps.WithLabelValues("ok")) >= float64(n)
	})
}

// broadcastSeqsUntilPong pings and returns the broadcast seqs read before
// the PONG, skipping other frames (a BIND_REPLY).
func broadcastSeqsUntilPong(t *testing.T, c *tclient, seq uint32) []uint64 {
	t.Helper()
	c.writeRaw(protocol.AppendFrame(nil, protocol.OpPing, 0, seq, nil))
	var seqs []uint64
	for {
		f, m := c.read()
		switch f.Op {
		case protocol.OpPong:
			return seqs
		case protocol.OpPush:
			seqs = append(seqs, m.(*clientpb.Push).GetBroadcastSeq())
		}
	}
}

func TestAuthBroadcastGapsCaughtUp(t *testing.T) {
	for _, noBatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("single=%v", noBatch), func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, engine string) { testAuthBroadcastGaps(t, engine, noBatch) })
		})
	}
}

func testAuthBroadcastGaps(t *testing.T, engine string, noBatch bool) {
	e := gapEnv(t, engine, noBatch, "main")
	login := func(user string, gaps uint64) *tclient {
		c := e.dial()
		c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: e.token("main", testVendorSecret, user, "d", time.Hour), LastBroadcastSeq: 6, BroadcastGaps: gaps})
		if f, m := c.read(); f.Op != protocol.OpAuthReply {
			t.Fatalf("got %s %v, want AUTH_REPLY", f.Op, m)
		}
		return c
	}
	// Reported 6 with 5 missing: gets 5, and neither 4 nor 6.
	gap := login("u1", 1)
	catchUpsOK(t, e, 1)
	if got := broadcastSeqsUntilPong(t, gap, 2); fmt.Sprint(got) != "[5]" {
		t.Fatalf("client missing 5 was given %v, want [5]", got)
	}
	// Without gaps as before: nothing at or below 6.
	none := login("u2", 0)
	catchUpsOK(t, e, 2)
	if got := broadcastSeqsUntilPong(t, none, 2); len(got) != 0 {
		t.Fatalf("client without gaps was given %v, want none", got)
	}
}

func TestBindBroadcastGapsCaughtUp(t *testing.T) {
	for _, noBatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("single=%v", noBatch), func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, engine string) { testBindBroadcastGaps(t, engine, noBatch) })
		})
	}
}

func testBindBroadcastGaps(t *testing.T, engine string, noBatch bool) {
	e := gapEnv(t, engine, noBatch, "mail")
	bind := func(user string, gaps uint64, ok int) *tclient {
		c := e.dial()
		c.auth(e.token("main", testVendorSecret, user, "d", time.Hour), "")
		catchUpsOK(t, e, ok)
		c.write(protocol.OpBind, 2, &clientpb.Bind{Token: e.token("mail", testVendorSecret, user, "d", time.Hour), LastBroadcastSeq: 6, BroadcastGaps: gaps})
		return c
	}
	// The bound app reported 6 with 5 missing: gets 5 of mail only.
	gap := bind("u1", 1, 1)
	catchUpsOK(t, e, 2)
	if got := broadcastSeqsUntilPong(t, gap, 3); fmt.Sprint(got) != "[5]" {
		t.Fatalf("bound app missing 5 was given %v, want [5]", got)
	}
	none := bind("u2", 0, 3)
	catchUpsOK(t, e, 4)
	if got := broadcastSeqsUntilPong(t, none, 3); len(got) != 0 {
		t.Fatalf("bound app without gaps was given %v, want none", got)
	}
}

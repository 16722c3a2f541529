package sdk

import (
	"context"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// The highest broadcast seq handled is reported in every AUTH, across
// reconnects, starting from Config.LastBroadcastSeq.
func TestLastBroadcastSeqAcrossReconnects(t *testing.T) {
	room := newTestRoom(t)
	h := start(t, Config{Endpoints: []string{room.addr()}, LastBroadcastSeq: 5})
	rc := room.next(t)
	if got := rc.auth.GetLastBroadcastSeq(); got != 5 {
		t.Fatalf("first AUTH reports %d, want 5", got)
	}
	rc.send(protocol.OpPush, 0, &clientpb.Push{Id: 100, App: "a", Payload: []byte("b9"), Qos: 1, BroadcastSeq: 9})
	if m := h.msg(t); m.BroadcastSeq != 9 {
		t.Fatalf("message seq %d, want 9", m.BroadcastSeq)
	}
	// An older one arriving late does not lower it; a unicast leaves it.
	rc.send(protocol.OpPush, 0, &clientpb.Push{Id: 101, App: "a", Payload: []byte("b7"), Qos: 1, BroadcastSeq: 7})
	h.msg(t)
	rc.push(102, 1, "unicast")
	h.msg(t)
	rc.ackedIDs(t, 3)
	if got := h.c.LastBroadcastSeq(); got != 9 {
		t.Fatalf("LastBroadcastSeq %d, want 9", got)
	}
	rc.c.Close()
	rc2 := room.next(t)
	if got := rc2.auth.GetLastBroadcastSeq(); got != 9 {
		t.Fatalf("AUTH after reconnect reports %d, want 9", got)
	}
}

// readBind reads the next frame, which must be a BIND, answers it as bound
// for app and returns it.
func (rc *roomConn) readBind(t *testing.T, app string) *clientpb.Bind {
	t.Helper()
	select {
	case f, ok := <-rc.frames:
		if !ok || f.Op != protocol.OpBind {
			t.Fatalf("got %s (open %v), want BIND", f.Op, ok)
		}
		m, err := protocol.DecodeBody(f)
		if err != nil {
			t.Fatal(err)
		}
		rc.send(protocol.OpBindReply, f.Seq, &clientpb.BindReply{App: app, SessionId: "s-" + app})
		return m.(*clientpb.Bind)
	case <-time.After(5 * time.Second):
		t.Fatalf("no BIND of %s within 5s", app)
		return nil
	}
}

// A broadcast missed between two handled ones is reported as a gap in the
// next AUTH (Config.App) and BIND (a bound app), each app in its own
// window: after 5 and 7 but not 6, last 7 with bit 0 (seq 6) set.
func TestBroadcastGapsReported(t *testing.T) {
	room := newTestRoom(t)
	h := start(t, Config{Endpoints: []string{room.addr()}, App: "main", LastBroadcastSeq: 4})
	rc := room.next(t)
	h.state(t, "connected "+room.addr())
	if a := rc.auth; a.GetLastBroadcastSeq() != 4 || a.GetBroadcastGaps() != 0 {
		t.Fatalf("first AUTH reports (%d, %b), want (4, 0)", a.GetLastBroadcastSeq(), a.GetBroadcastGaps())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.c.Bind(ctx, "mail", "tok-mail") }()
	if b := rc.readBind(t, "mail"); b.GetLastBroadcastSeq() != 0 || b.GetBroadcastGaps() != 0 {
		t.Fatalf("first BIND reports (%d, %b), want (0, 0)", b.GetLastBroadcastSeq(), b.GetBroadcastGaps())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, p := range []struct {
		app string
		seq uint64
	}{{"main", 5}, {"mail", 20}, {"main", 7}, {"mail", 22}, {"mail", 21}} {
		rc.send(protocol.OpPush, 0, &clientpb.Push{Id: uint64(100 + i), App: p.app, Qos: 1, BroadcastSeq: p.seq})
		h.msg(t)
	}
	rc.ackedIDs(t, 5)
	rc.c.Close()
	rc2 := room.next(t)
	if a := rc2.auth; a.GetLastBroadcastSeq() != 7 || a.GetBroadcastGaps() != 1 {
		t.Fatalf("AUTH after reconnect reports (%d, %b), want (7, 1): 6 missing", a.GetLastBroadcastSeq(), a.GetBroadcastGaps())
	}
	// mail had 20, 21, 22; below 20 nothing of it was ever handled.
	if b := rc2.readBind(t, "mail"); b.GetLastBroadcastSeq() != 22 || b.GetBroadcastGaps() != (1<<19-1)<<2 {
		t.Fatalf("BIND after reconnect reports (%d, %b), want (22, 19 ones above bits 0-1): 1..19 missing", b.GetLastBroadcastSeq(), b.GetBroadcastGaps())
	}
	if got := h.c.LastBroadcastSeq(); got != 7 {
		t.Fatalf("LastBroadcastSeq %d, want 7 (main's, not mail's)", got)
	}
}

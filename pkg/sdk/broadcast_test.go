package sdk

import (
	"testing"

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

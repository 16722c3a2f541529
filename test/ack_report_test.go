package test

import (
	"strconv"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// TestDeliveryReportWaitsForAck: a client that acks only after the room
// has flushed a Report since the delivery (past its 5 ms flush window, as
// on a mobile network's round trip) still has its delivery reach saver in
// the same Report as its ACK — the room held the delivery report for it —
// and saver records the message acked after one delivery. A message never
// acked is reported delivered once the hold ends, so center's sweep does
// not send it again.
func TestDeliveryReportWaitsForAck(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, ExtraRoomArg: []string{"-report-hold", "1s"}})
	room := c.Procs[RoomName(0)].Admin
	waitCenterStores(t, c)
	raw := Dial(t, c.RoomTCP[0])
	raw.Auth(c.Token("slow-acker", "phone", time.Hour))
	// Pushes after the login's pull go out live, which is the path that
	// reports deliveries from the room.
	Eventually(t, 20*time.Second, "login pull answered", func() bool { return saverPendingCalls(t, c) >= 1 })

	acked := c.Push("slow-acker", 1, time.Hour, "acked after a round trip")
	if p, err := raw.NextPush(10 * time.Second); err != nil || p.GetId() != acked {
		t.Fatalf("push %v, %v; want message %d", p, err, acked)
	}
	Eventually(t, 10*time.Second, "delivery report held", func() bool {
		return AdminValue(t, room, "pushgw_room_deliveries_held") == 1
	})
	// The client's round trip: an ACK of an id that names no message makes
	// the room send saver a Report of its own; once saver has it, a flush
	// window has passed since the delivery, and the delivery was not in it.
	reports := methodCalls(t, c, "saver", "pushgw_saver_rpc_duration_seconds", "Report")
	raw.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{1 << 62}})
	Eventually(t, 10*time.Second, "a Report after the delivery", func() bool {
		return methodCalls(t, c, "saver", "pushgw_saver_rpc_duration_seconds", "Report") > reports
	})
	if st := c.Status(acked); st == "delivered" {
		t.Fatal("the delivery reached saver before its ACK")
	}
	raw.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{acked}})
	Eventually(t, 20*time.Second, "message acked in saver", func() bool { return c.Status(acked) == "acked" })
	if n := AdminValue(t, room, "pushgw_room_deliveries_folded_total"); n != 1 {
		t.Fatalf("deliveries folded into their ACK: %v, want 1", n)
	}
	if n := deliveryCount(t, c, acked); n != 1 {
		t.Fatalf("acked message: delivery_count %d, want 1", n)
	}

	unacked := c.Push("slow-acker", 1, time.Hour, "never acked")
	if p, err := raw.NextPush(10 * time.Second); err != nil || p.GetId() != unacked {
		t.Fatalf("push %v, %v; want message %d", p, err, unacked)
	}
	Eventually(t, 20*time.Second, "unacked message reported delivered after the hold", func() bool {
		return c.Status(unacked) == "delivered"
	})
	if n := AdminValue(t, room, "pushgw_room_deliveries_held"); n != 0 {
		t.Fatalf("%v deliveries still held after the hold", n)
	}
	if n := deliveryCount(t, c, unacked); n != 1 {
		t.Fatalf("unacked message: delivery_count %d, want 1", n)
	}
	if n := AdminValue(t, room, "pushgw_room_deliveries_folded_total"); n != 1 {
		t.Fatalf("deliveries folded: %v after an unacked one, want still 1", n)
	}
}

// deliveryCount is a message's delivery_count from the status API.
func deliveryCount(t *testing.T, c *Cluster, id uint64) int {
	t.Helper()
	code, out := c.API("GET", "/v1/messages/"+strconv.FormatUint(id, 10), nil)
	if code != 200 {
		t.Fatalf("status %d: %d %v", id, code, out)
	}
	n, _ := out["delivery_count"].(float64)
	return int(n)
}

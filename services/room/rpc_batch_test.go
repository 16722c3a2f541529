package main

import (
	"context"
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

func TestRoomServicePushBatch(t *testing.T) { forEachEngine(t, testRoomServicePushBatch) }

func testRoomServicePushBatch(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	cc, err := grpc.NewClient("passthrough:///"+e.cfg.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rc := internalpb.NewRoomClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	a := e.dial()
	aid := connID(t, a.auth(e.token("appA", testSecretA, "hank", "", time.Hour), "p1").GetSessionId())
	b := e.dial()
	bid := connID(t, b.auth(e.token("appB", testSecretB, "ivy", "", time.Hour), "p1").GetSessionId())
	ta := &internalpb.Target{ConnId: aid, App: "appA", User: "hank"}
	tb := &internalpb.Target{ConnId: bid, App: "appB", User: "ivy"}
	msg := func(id uint64, app, user string) *internalpb.Message {
		return &internalpb.Message{Id: id, App: app, User: user, Payload: []byte("p"), Qos: 1}
	}
	expiredMsg := msg(3, "appA", "hank")
	expiredMsg.ExpiresMs = time.Now().Add(-time.Minute).UnixMilli()

	rep, err := rc.PushBatch(ctx, &internalpb.RoomPushBatchRequest{Pushes: []*internalpb.RoomPushRequest{
		{Message: msg(1, "appA", "hank"), Targets: []*internalpb.Target{ta}},
		{Message: msg(2, "appB", "ivy"), Targets: []*internalpb.Target{tb, {ConnId: bid, App: "appA", User: "ivy"}}},
		{Message: expiredMsg, Targets: []*internalpb.Target{ta}},
		{Message: msg(4, "appA", "hank"), Targets: []*internalpb.Target{ta}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ok, nf, inv := internalpb.ResultCode_RESULT_CODE_OK, internalpb.ResultCode_RESULT_CODE_NOT_FOUND, internalpb.ResultCode_RESULT_CODE_INVALID
	want := [][]internalpb.ResultCode{{ok}, {ok, nf}, {inv}, {ok}}
	if len(rep.GetReplies()) != len(want) {
		t.Fatalf("%d replies, want %d", len(rep.GetReplies()), len(want))
	}
	for i, r := range rep.GetReplies() {
		if len(r.GetResults()) != len(want[i]) {
			t.Fatalf("reply %d: %v", i, r)
		}
		for j, res := range r.GetResults() {
			if res.GetCode() != want[i][j] {
				t.Fatalf("reply %d result %d = %v, want %v", i, j, res.GetCode(), want[i][j])
			}
		}
	}
	// Each connection gets its messages, in batch order, and nothing else.
	for _, w := range []struct {
		c   *tclient
		ids []uint64
	}{{a, []uint64{1, 4}}, {b, []uint64{2}}} {
		for _, id := range w.ids {
			f, m := w.c.read()
			if p, ok := m.(*clientpb.Push); f.Op != protocol.OpPush || !ok || p.GetId() != id {
				t.Fatalf("got %s %v, want PUSH %d", f.Op, m, id)
			}
		}
		w.c.ping(9)
	}

	// Over a bound, or malformed anywhere: the whole batch is refused and
	// nothing is written.
	many := make([]*internalpb.RoomPushRequest, maxBatchPushes+1)
	for i := range many {
		many[i] = &internalpb.RoomPushRequest{Message: msg(uint64(10+i), "appA", "hank"), Targets: []*internalpb.Target{ta}}
	}
	wide := make([]*internalpb.RoomPushRequest, 2)
	for i := range wide {
		ts := make([]*internalpb.Target, maxBatchTargets/2+1)
		for j := range ts {
			ts[j] = ta
		}
		wide[i] = &internalpb.RoomPushRequest{Message: msg(uint64(5000+i), "appA", "hank"), Targets: ts}
	}
	for name, req := range map[string]*internalpb.RoomPushBatchRequest{
		"too many pushes":  {Pushes: many},
		"too many targets": {Pushes: wide},
		"no message": {Pushes: []*internalpb.RoomPushRequest{
			{Message: msg(6000, "appA", "hank"), Targets: []*internalpb.Target{ta}}, {Targets: []*internalpb.Target{ta}}}},
	} {
		if _, err := rc.PushBatch(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%s: err %v, want InvalidArgument", name, err)
		}
	}
	a.ping(10)

	// An empty batch is a no-op.
	if rep, err := rc.PushBatch(ctx, &internalpb.RoomPushBatchRequest{}); err != nil || len(rep.GetReplies()) != 0 {
		t.Fatalf("empty batch = %v, %v", rep, err)
	}
}

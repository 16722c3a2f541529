package main

import (
	"bytes"
	"math"
	"strconv"
	"testing"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// TestAuthReplyWire: the hand-written AUTH_REPLY is byte for byte what
// protocol.AppendMessage makes of the same clientpb.AuthReply, zero
// fields left out included, and refuses what proto.Marshal refuses.
func TestAuthReplyWire(t *testing.T) {
	cases := []authReplyFields{
		{instance: "room-1", connID: 1},
		{instance: "", connID: 0},
		{instance: "room-a-long-instance-name-é", connID: math.MaxUint64, heartbeat: 30, serverMs: 1_790_000_000_123, maxInflight: 64},
		{instance: "room-1", connID: 42, heartbeat: 1, serverMs: -5, maxInflight: math.MaxUint32, token: []byte("0123456789abcdef0123456789abcdef")},
		{instance: "room-1", connID: 7, heartbeat: 300, serverMs: 1, resumed: true, resumedApps: []string{"a", "", "app-two"}, token: []byte("ff")},
		{instance: "room-1", connID: 8, resumedApps: []string{"only"}},
	}
	for i, f := range cases {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			want, err := protocol.AppendMessage([]byte("prefix"), protocol.OpAuthReply, uint32(i)+1, &clientpb.AuthReply{
				SessionId:        f.instance + ":" + strconv.FormatUint(f.connID, 10),
				HeartbeatSeconds: f.heartbeat,
				ServerTimeMs:     f.serverMs,
				MaxInflight:      f.maxInflight,
				ResumeToken:      string(f.token),
				Resumed:          f.resumed,
				ResumedApps:      f.resumedApps,
			})
			if err != nil {
				t.Fatal(err)
			}
			got, ok := appendAuthReply([]byte("prefix"), uint32(i)+1, f)
			if !ok {
				t.Fatal("appendAuthReply refused valid fields")
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("AUTH_REPLY\n got %x\nwant %x", got, want)
			}
		})
	}
	for _, f := range []authReplyFields{
		{instance: "room-\xff", connID: 1},
		{instance: "room-1", connID: 1, token: []byte{0xff}},
		{instance: "room-1", connID: 1, resumed: true, resumedApps: []string{"ok", "\xc3"}},
	} {
		if _, err := protocol.AppendMessage(nil, protocol.OpAuthReply, 1, &clientpb.AuthReply{
			SessionId: f.instance + ":1", ResumeToken: string(f.token), Resumed: f.resumed, ResumedApps: f.resumedApps,
		}); err == nil {
			t.Fatalf("proto.Marshal accepted %+v; the test's premise is wrong", f)
		}
		if out, ok := appendAuthReply([]byte("x"), 1, f); ok || string(out) != "x" {
			t.Fatalf("appendAuthReply(%+v) = %q, %v; want refused, dst unchanged", f, out, ok)
		}
	}
}

package protocol

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// AppendMessage marshals in place: the same bytes as a marshalled body
// appended with AppendFrame, after whatever dst held.
func TestAppendMessageMatchesAppendFrame(t *testing.T) {
	msgs := []proto.Message{
		&clientpb.AuthReply{},
		&clientpb.AuthReply{SessionId: "room-1:123", HeartbeatSeconds: 30, ServerTimeMs: 1764000000000, MaxInflight: 32, ResumeToken: "00ff", ResumedApps: []string{"a", "b"}},
		&clientpb.Push{Id: 1 << 52, App: "bench", Payload: bytes.Repeat([]byte("x"), 300), Qos: 1},
		&clientpb.Kick{Code: 3, Reason: "replaced"},
	}
	for _, prefix := range [][]byte{nil, []byte("abc"), make([]byte, 2, 1024)} {
		for _, m := range msgs {
			body, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			want := AppendFrame(append([]byte(nil), prefix...), OpPush, 0, 9, body)
			got, err := AppendMessage(append([]byte(nil), prefix...), OpPush, 9, m)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%T after %d bytes: got %x (%v), want %x", m, len(prefix), got, err, want)
			}
		}
	}
}

package protocol

import (
	"bytes"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// A typical PUSH body: a 64-byte payload with its id, app and times.
func benchPushBody(b *testing.B) []byte {
	body, err := proto.Marshal(&clientpb.Push{Id: 1 << 52, App: "bench", Payload: bytes.Repeat([]byte("x"), 64),
		Qos: 1, CreatedMs: 1764000000000, ExpiresMs: 1764000600000})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func BenchmarkAppendFrame(b *testing.B) {
	body := benchPushBody(b)
	buf := make([]byte, 0, HeaderSize+len(body))
	b.SetBytes(int64(HeaderSize + len(body)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFrame(buf[:0], OpPush, 0, 7, body)
	}
}

// BenchmarkAppendMessage includes the protobuf marshalling a room does for
// each PUSH it encodes.
func BenchmarkAppendMessage(b *testing.B) {
	msg := &clientpb.Push{Id: 1 << 52, App: "bench", Payload: bytes.Repeat([]byte("x"), 64), Qos: 1,
		CreatedMs: 1764000000000, ExpiresMs: 1764000600000}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendMessage(buf[:0], OpPush, 7, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	frame := AppendFrame(nil, OpPush, 0, 7, benchPushBody(b))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		f, n, err := Decode(frame, DefaultMaxBodySize)
		if err != nil || n != len(frame) || f.Op != OpPush {
			b.Fatalf("Decode = %v, %d, %v", f.Op, n, err)
		}
	}
}

// BenchmarkReader reads a stream of back-to-back frames, as the room's
// goroutine-per-connection engine does.
func BenchmarkReader(b *testing.B) {
	const framesPerStream = 1024
	one := AppendFrame(nil, OpPush, 0, 7, benchPushBody(b))
	stream := bytes.Repeat(one, framesPerStream)
	src := bytes.NewReader(stream)
	r := NewReader(src, DefaultMaxBodySize)
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := r.Read()
		if err == io.EOF {
			src.Reset(stream)
			f, err = r.Read()
		}
		if err != nil || f.Op != OpPush {
			b.Fatalf("Read = %v, %v", f.Op, err)
		}
	}
}

func BenchmarkDecodeBody(b *testing.B) {
	f := Frame{Op: OpPush, Body: benchPushBody(b)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBody(f); err != nil {
			b.Fatal(err)
		}
	}
}

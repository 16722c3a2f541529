package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// sampleBodies holds one filled body per operation (nil for PING/PONG).
func sampleBodies() map[Op]proto.Message {
	return map[Op]proto.Message{
		OpAuth:        &clientpb.Auth{Token: "tok", Device: "d1", Platform: "linux", SdkVersion: "test/1", LastBroadcastSeq: 42},
		OpAuthReply:   &clientpb.AuthReply{SessionId: "s-1", HeartbeatSeconds: 30, ServerTimeMs: 1700000000000, MaxInflight: 64},
		OpPing:        nil,
		OpPong:        nil,
		OpPush:        &clientpb.Push{Id: 1 << 60, App: "demo", Payload: []byte{0, 1, 0xff}, Qos: 1, CreatedMs: 1, ExpiresMs: 2},
		OpAck:         &clientpb.Ack{Ids: []uint64{1, 2, 1 << 63}},
		OpUplink:      &clientpb.Uplink{Route: "chat", Payload: []byte("hi")},
		OpUplinkReply: &clientpb.UplinkReply{Code: uint32(CodeUplinkFailed), Message: "webhook 500", Payload: []byte("x")},
		OpKick:        &clientpb.Kick{Code: uint32(CodeKicked), Reason: "admin"},
		OpRedirect:    &clientpb.Redirect{Endpoints: []string{"127.0.0.1:7300", "127.0.0.1:7310"}, BackoffMs: 250, Reason: "drain"},
		OpError:       &clientpb.Error{Code: uint32(CodeBadBody), Message: "bad"},
		OpBind:        &clientpb.Bind{Token: "tok2", LastBroadcastSeq: 7},
		OpBindReply:   &clientpb.BindReply{Code: uint32(CodeBindVendor), Message: "other vendor", App: "demo2", SessionId: "room-1:9"},
		OpUnbind:      &clientpb.Unbind{App: "demo2", Code: uint32(CodeReplaced), Reason: "newer login"},
		OpUnbindReply: &clientpb.UnbindReply{Code: uint32(CodeNotBound), Message: "not bound", App: "demo2"},
	}
}

func TestRoundTripEveryOp(t *testing.T) {
	bodies := sampleBodies()
	for op := Op(1); op <= opMax; op++ {
		msg, ok := bodies[op]
		if !ok {
			t.Fatalf("no sample body for %s", op)
		}
		b, err := AppendMessage([]byte("prefix"), op, 7, msg)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		b = b[len("prefix"):]
		f, n, err := Decode(b, 0)
		if err != nil || n != len(b) {
			t.Fatalf("%s: Decode = n %d err %v, want n %d", op, n, err, len(b))
		}
		if f.Op != op || f.Seq != 7 || f.Flags != 0 {
			t.Fatalf("%s: header = %+v", op, f)
		}
		got, err := DecodeBody(f)
		if err != nil {
			t.Fatalf("%s: DecodeBody: %v", op, err)
		}
		if msg == nil {
			if got != nil || len(f.Body) != 0 {
				t.Fatalf("%s: want no body, got %v (%d bytes)", op, got, len(f.Body))
			}
			continue
		}
		if !proto.Equal(got, msg) {
			t.Fatalf("%s: body = %v, want %v", op, got, msg)
		}

		// The same bytes through the stream reader.
		r := NewReader(bytes.NewReader(b), 0)
		rf, err := r.Read()
		if err != nil || rf.Op != op || !bytes.Equal(rf.Body, f.Body) {
			t.Fatalf("%s: Reader = %+v, %v", op, rf, err)
		}
		if _, err := r.Read(); err != io.EOF {
			t.Fatalf("%s: second Read err = %v, want io.EOF", op, err)
		}
	}
}

func TestOpAndCodeNames(t *testing.T) {
	seen := map[string]bool{}
	for op := Op(1); op <= opMax; op++ {
		if !op.Valid() || seen[op.String()] {
			t.Fatalf("op %d: valid %v name %q", op, op.Valid(), op.String())
		}
		seen[op.String()] = true
	}
	for _, op := range []Op{0, opMax + 1, 255} {
		if op.Valid() {
			t.Fatalf("op %d reported valid", op)
		}
	}
	codes := Codes()
	for i, c := range codes {
		if i > 0 && codes[i-1] >= c {
			t.Fatalf("Codes not strictly ascending at %d", c)
		}
		if _, ok := codeNames[c]; !ok {
			t.Fatalf("code %d has no name", c)
		}
	}
	if len(codes) != len(codeNames) {
		t.Fatalf("Codes() lists %d codes, %d are named", len(codes), len(codeNames))
	}
	if Code(9999).String() != "CODE(9999)" {
		t.Fatalf("unknown code name = %q", Code(9999).String())
	}
}

func header(magic uint16, version uint8, op Op, length uint32) []byte {
	b := make([]byte, HeaderSize)
	binary.BigEndian.PutUint16(b[0:2], magic)
	b[2] = version
	b[3] = byte(op)
	binary.BigEndian.PutUint32(b[6:10], 99)
	binary.BigEndian.PutUint32(b[10:14], length)
	return b
}

func TestHeaderValidation(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		max  int
		want error
		code Code
	}{
		{"bad magic", header(0x4750, Version, OpPing, 0), 0, ErrBadMagic, CodeBadFrame},
		{"bad version", header(Magic, 2, OpPing, 0), 0, ErrBadVersion, CodeBadVersion},
		{"version zero", header(Magic, 0, OpPing, 0), 0, ErrBadVersion, CodeBadVersion},
		{"op zero", header(Magic, Version, 0, 0), 0, ErrUnknownOp, CodeUnknownOp},
		{"op past last", header(Magic, Version, opMax+1, 0), 0, ErrUnknownOp, CodeUnknownOp},
		{"op 255", header(Magic, Version, 255, 0), 0, ErrUnknownOp, CodeUnknownOp},
		{"over default", header(Magic, Version, OpPush, DefaultMaxBodySize+1), 0, ErrFrameTooLarge, CodeFrameTooLarge},
		{"over configured", header(Magic, Version, OpPush, 1025), 1024, ErrFrameTooLarge, CodeFrameTooLarge},
		{"over hard limit", header(Magic, Version, OpPush, MaxBodySizeLimit+1), 1 << 30, ErrFrameTooLarge, CodeFrameTooLarge},
		{"1 GiB", header(Magic, Version, OpPush, 1<<30), 0, ErrFrameTooLarge, CodeFrameTooLarge},
		{"max uint32", header(Magic, Version, OpPush, ^uint32(0)), 0, ErrFrameTooLarge, CodeFrameTooLarge},
		{"short header", header(Magic, Version, OpPing, 0)[:HeaderSize-1], 0, ErrShortFrame, CodeBadFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseHeader(tc.b, tc.max); !errors.Is(err, tc.want) {
				t.Fatalf("ParseHeader err = %v, want %v", err, tc.want)
			}
			if _, n, err := Decode(tc.b, tc.max); !errors.Is(err, tc.want) || n != 0 {
				t.Fatalf("Decode = n %d err %v, want %v", n, err, tc.want)
			}
			if tc.want != ErrShortFrame {
				_, err := NewReader(bytes.NewReader(tc.b), tc.max).Read()
				if !errors.Is(err, tc.want) {
					t.Fatalf("Reader err = %v, want %v", err, tc.want)
				}
			}
			if got := CodeOf(tc.want); got != tc.code {
				t.Fatalf("CodeOf = %s, want %s", got, tc.code)
			}
		})
	}
	if CodeOf(nil) != CodeOK || CodeOf(io.ErrUnexpectedEOF) != CodeInternal {
		t.Fatal("CodeOf(nil / other) wrong")
	}
}

func TestLimitsAtTheEdge(t *testing.T) {
	if _, err := ParseHeader(header(Magic, Version, OpPush, DefaultMaxBodySize), 0); err != nil {
		t.Fatalf("body of exactly the default limit rejected: %v", err)
	}
	if _, err := ParseHeader(header(Magic, Version, OpPush, MaxBodySizeLimit), 1<<30); err != nil {
		t.Fatalf("body of exactly the hard limit rejected: %v", err)
	}
	if _, err := ParseHeader(header(Magic, Version, OpPush, 100), -5); err != nil {
		t.Fatalf("negative limit must mean default: %v", err)
	}
}

// repeatReader returns the same bytes forever, so a Reader can be called
// many times without allocating a new source.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

func TestHugeLengthRejectedWithoutAllocating(t *testing.T) {
	r := NewReader(&repeatReader{b: header(Magic, Version, OpPush, 1<<30)}, 0)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := r.Read(); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
	if allocs != 0 {
		t.Fatalf("rejecting a 1 GiB header allocated %.1f times per read", allocs)
	}
	if r.buf != nil {
		t.Fatalf("reader grew a %d-byte buffer for a rejected frame", cap(r.buf))
	}
	allocs = testing.AllocsPerRun(100, func() {
		if _, _, err := Decode(header(Magic, Version, OpPush, 1<<30), 0); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
	if allocs > 1 { // the header slice built by the closure itself
		t.Fatalf("Decode allocated %.1f times", allocs)
	}
}

func TestDecodePartialInput(t *testing.T) {
	full, _ := AppendMessage(nil, OpPush, 3, sampleBodies()[OpPush])
	for i := 0; i < len(full); i++ {
		f, n, err := Decode(full[:i], 0)
		if !errors.Is(err, ErrShortFrame) || n != 0 || f.Body != nil {
			t.Fatalf("Decode(%d of %d bytes) = %+v, %d, %v; want ErrShortFrame", i, len(full), f, n, err)
		}
	}
	// Two frames back to back plus the start of a third: an event loop
	// consumes the first two and keeps the rest.
	buf := append(append(append([]byte{}, full...), full...), full[:5]...)
	var got int
	for {
		_, n, err := Decode(buf, 0)
		if errors.Is(err, ErrShortFrame) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		buf = buf[n:]
		got++
	}
	if got != 2 || len(buf) != 5 {
		t.Fatalf("decoded %d frames, %d bytes left; want 2 and 5", got, len(buf))
	}
}

func TestDecodeBodyAliasesAndIsCapped(t *testing.T) {
	b := AppendFrame(nil, OpUplink, 0, 1, []byte("abc"))
	b = append(b, "next"...)
	f, n, err := Decode(b, 0)
	if err != nil || n != HeaderSize+3 {
		t.Fatal(n, err)
	}
	// The body's capacity stops at its end so an append cannot clobber the
	// next frame in the caller's buffer.
	if cap(f.Body) != 3 {
		t.Fatalf("body cap = %d, want 3", cap(f.Body))
	}
}

func TestReaderTruncated(t *testing.T) {
	full, _ := AppendMessage(nil, OpAck, 1, sampleBodies()[OpAck])
	for i := 1; i < len(full); i++ {
		_, err := NewReader(bytes.NewReader(full[:i]), 0).Read()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Read of %d/%d bytes: err = %v, want io.ErrUnexpectedEOF", i, len(full), err)
		}
	}
	if _, err := NewReader(bytes.NewReader(nil), 0).Read(); err != io.EOF {
		t.Fatalf("Read of empty stream: err = %v, want io.EOF", err)
	}
}

func TestReaderReusesAndReleasesBuffer(t *testing.T) {
	var stream []byte
	stream = AppendFrame(stream, OpUplink, 0, 1, bytes.Repeat([]byte("a"), 1000))
	stream = AppendFrame(stream, OpUplink, 0, 2, bytes.Repeat([]byte("b"), 10))
	r := NewReader(bytes.NewReader(stream), 0)
	f1, err := r.Read()
	if err != nil || len(f1.Body) != 1000 {
		t.Fatal(err)
	}
	f2, err := r.Read()
	if err != nil || string(f2.Body) != "bbbbbbbbbb" || f2.Seq != 2 {
		t.Fatalf("%+v %v", f2, err)
	}
	if &f1.Body[0] != &f2.Body[0] {
		t.Fatal("reader did not reuse its buffer")
	}
	r.Release()
	if r.buf != nil {
		t.Fatal("Release kept the buffer")
	}
}

// A peer that announces a large body but sends little makes the reader
// hold about what arrived, not what was announced.
func TestReaderGrowsWithArrivingBytes(t *testing.T) {
	const announced = 60 << 10
	frame := AppendFrame(nil, OpUplink, 0, 1, bytes.Repeat([]byte("x"), announced))
	sent := HeaderSize + 100
	r := NewReader(bytes.NewReader(frame[:sent]), 0)
	if _, err := r.Read(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if cap(r.buf) > readChunk {
		t.Fatalf("buffer of %d bytes for 100 arrived of %d announced", cap(r.buf), announced)
	}
	// The whole body still reads, into one buffer reused afterwards.
	r = NewReader(bytes.NewReader(append(frame, frame...)), 0)
	for i := 0; i < 2; i++ {
		f, err := r.Read()
		if err != nil || len(f.Body) != announced || f.Body[announced-1] != 'x' {
			t.Fatalf("read %d: %d bytes, %v", i, len(f.Body), err)
		}
	}
	if cap(r.buf) != announced {
		t.Fatalf("buffer cap %d after two %d-byte bodies", cap(r.buf), announced)
	}
}

func TestDecodeBodyErrors(t *testing.T) {
	if _, err := DecodeBody(Frame{Op: OpPing, Body: []byte{1}}); err == nil {
		t.Fatal("PING with a body accepted")
	}
	if _, err := DecodeBody(Frame{Op: OpPong, Body: []byte{1}}); err == nil {
		t.Fatal("PONG with a body accepted")
	}
	// Field 1 (token) declared 5 bytes long with 1 present.
	if _, err := DecodeBody(Frame{Op: OpAuth, Body: []byte{0x0a, 0x05, 'x'}}); err == nil {
		t.Fatal("truncated AUTH body accepted")
	}
	// Invalid UTF-8 in a proto3 string field.
	if _, err := DecodeBody(Frame{Op: OpAuth, Body: []byte{0x0a, 0x01, 0xff}}); err == nil {
		t.Fatal("AUTH with invalid UTF-8 token accepted")
	}
	if m, err := DecodeBody(Frame{Op: OpAck}); err != nil || len(m.(*clientpb.Ack).Ids) != 0 {
		t.Fatalf("empty ACK body: %v %v", m, err)
	}
	if NewBody(0) != nil || NewBody(opMax+1) != nil {
		t.Fatal("NewBody of unknown op returned a message")
	}
}

func TestErrorFrame(t *testing.T) {
	b := ErrorFrame(nil, 5, CodeAuthTimeout, "no AUTH within 10s")
	f, _, err := Decode(b, 0)
	if err != nil || f.Op != OpError || f.Seq != 5 {
		t.Fatal(f, err)
	}
	m, err := DecodeBody(f)
	if err != nil {
		t.Fatal(err)
	}
	e := m.(*clientpb.Error)
	if Code(e.Code) != CodeAuthTimeout || e.Message != "no AUTH within 10s" {
		t.Fatalf("%v", e)
	}
}

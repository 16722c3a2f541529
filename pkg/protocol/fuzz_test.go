package protocol

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ as well; the f.Add seeds
// below keep the fuzzers useful even if those files are pruned.

func addFrameSeeds(f *testing.F) {
	for op, msg := range sampleBodies() {
		b, _ := AppendMessage(nil, op, 1, msg)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(header(Magic, Version, OpPush, 1<<30))
}

// FuzzDecode checks Decode never panics, never claims more bytes than it was
// given, and that what it accepts re-encodes to exactly the bytes consumed.
func FuzzDecode(f *testing.F) {
	addFrameSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := Decode(b, 0)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with n = %d", err, n)
			}
			if errors.Is(err, ErrShortFrame) && len(b) >= HeaderSize {
				h, herr := ParseHeader(b, 0)
				if herr != nil || HeaderSize+int(h.Length) <= len(b) {
					t.Fatalf("ErrShortFrame for a complete frame: %+v %v", h, herr)
				}
			}
			return
		}
		if n < HeaderSize || n > len(b) || n-HeaderSize > DefaultMaxBodySize {
			t.Fatalf("n = %d for %d input bytes", n, len(b))
		}
		if re := AppendFrame(nil, fr.Op, fr.Flags, fr.Seq, fr.Body); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded frame differs:\n got %x\nwant %x", re, b[:n])
		}
		_, _ = DecodeBody(fr)
	})
}

// oneByteReader hands out one byte per Read, the worst case for a stream
// reader's partial-read handling.
type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

// FuzzReadFrame checks the stream Reader agrees with Decode frame by frame
// on arbitrary input, whether bytes arrive all at once or one at a time.
func FuzzReadFrame(f *testing.F) {
	addFrameSeeds(f)
	two, _ := AppendMessage(nil, OpPush, 1, sampleBodies()[OpPush])
	two = AppendFrame(two, OpPing, 0, 2, nil)
	f.Add(two)
	f.Add(two[:len(two)-3])
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, src := range []io.Reader{bytes.NewReader(b), &oneByteReader{b: b}} {
			r := NewReader(src, 1024)
			rest := b
			for i := 0; ; i++ {
				if i > len(b)/HeaderSize+1 {
					t.Fatalf("read %d frames from %d bytes", i, len(b))
				}
				fr, err := r.Read()
				want, n, derr := Decode(rest, 1024)
				if err != nil {
					switch {
					case errors.Is(err, io.EOF):
						if len(rest) != 0 {
							t.Fatalf("io.EOF with %d bytes left", len(rest))
						}
					case errors.Is(err, io.ErrUnexpectedEOF):
						if !errors.Is(derr, ErrShortFrame) {
							t.Fatalf("reader: truncated, Decode: %v", derr)
						}
					default:
						if !errors.Is(derr, err) {
							t.Fatalf("reader err %v, Decode err %v", err, derr)
						}
					}
					break
				}
				if derr != nil {
					t.Fatalf("reader returned a frame, Decode: %v", derr)
				}
				if fr.Op != want.Op || fr.Seq != want.Seq || fr.Flags != want.Flags || !bytes.Equal(fr.Body, want.Body) {
					t.Fatalf("frame %d: reader %+v, Decode %+v", i, fr, want)
				}
				rest = rest[n:]
			}
		}
	})
}

// FuzzDecodeBody feeds arbitrary bodies to every operation: DecodeBody must
// not panic, and any body it accepts must survive a marshal round trip.
func FuzzDecodeBody(f *testing.F) {
	for op, msg := range sampleBodies() {
		var body []byte
		if msg != nil {
			body, _ = proto.Marshal(msg)
		}
		f.Add(uint8(op), body)
	}
	f.Add(uint8(OpAuth), []byte{0x0a, 0x05, 'x'})
	f.Add(uint8(OpAck), []byte{0x0a, 0x03, 0x01, 0x02, 0x03}) // packed ids
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		m, err := DecodeBody(Frame{Op: Op(op), Body: body})
		if err != nil {
			return
		}
		if m == nil {
			if NewBody(Op(op)) != nil || len(body) != 0 {
				t.Fatalf("op %d: nil message without error for %d-byte body", op, len(body))
			}
			return
		}
		again, err := proto.Marshal(m)
		if err != nil {
			t.Fatalf("op %s: re-marshal: %v", Op(op), err)
		}
		m2, err := DecodeBody(Frame{Op: Op(op), Body: again})
		if err != nil || !proto.Equal(m, m2) {
			t.Fatalf("op %s: round trip: %v\n%v\n%v", Op(op), err, m, m2)
		}
	})
}

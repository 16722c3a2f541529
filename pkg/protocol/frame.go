// Package protocol is the client wire format of pushgw: a fixed 14-byte
// binary header followed by a protobuf body (proto/pushgw/client/v1).
// docs/protocol.md is the normative description; this package implements it.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Wire constants. Changing any of them is a protocol version change.
const (
	// Magic is "PG" in ASCII, the first two bytes of every frame.
	Magic uint16 = 0x5047
	// Version is the only header version this package speaks.
	Version uint8 = 1
	// HeaderSize is the fixed size of the frame header in bytes.
	HeaderSize = 14
	// DefaultMaxBodySize bounds a body unless a server configures less.
	DefaultMaxBodySize = 64 << 10
	// MaxBodySizeLimit is the largest body any peer may ever accept; a
	// configured limit above it is clamped.
	MaxBodySizeLimit = 4 << 20
	// MaxPayloadSize is the largest message payload the cluster accepts: a
	// PUSH body adds the id, app, qos and times (well under 1 KiB with an
	// app name of at most 64 bytes), so every accepted payload fits in a
	// frame of DefaultMaxBodySize.
	MaxPayloadSize = DefaultMaxBodySize - 1024
)

// Op is the operation byte of a frame.
type Op uint8

// Operations. Values are on the wire; never renumber.
const (
	OpAuth        Op = 1
	OpAuthReply   Op = 2
	OpPing        Op = 3
	OpPong        Op = 4
	OpPush        Op = 5
	OpAck         Op = 6
	OpUplink      Op = 7
	OpUplinkReply Op = 8
	OpKick        Op = 9
	OpRedirect    Op = 10
	OpError       Op = 11
	// Several apps on one connection (docs/protocol.md §4.2).
	OpBind        Op = 12
	OpBindReply   Op = 13
	OpUnbind      Op = 14 // both directions
	OpUnbindReply Op = 15
	opMax         Op = OpUnbindReply
	// MaxOp is the highest defined operation (for tables indexed by op).
	MaxOp = opMax
)

var opNames = [...]string{
	OpAuth: "AUTH", OpAuthReply: "AUTH_REPLY", OpPing: "PING", OpPong: "PONG",
	OpPush: "PUSH", OpAck: "ACK", OpUplink: "UPLINK", OpUplinkReply: "UPLINK_REPLY",
	OpKick: "KICK", OpRedirect: "REDIRECT", OpError: "ERROR",
	OpBind: "BIND", OpBindReply: "BIND_REPLY", OpUnbind: "UNBIND", OpUnbindReply: "UNBIND_REPLY",
}

func (o Op) String() string {
	if o >= 1 && o <= opMax {
		return opNames[o]
	}
	return fmt.Sprintf("OP(%d)", uint8(o))
}

// Valid reports whether o is a known operation.
func (o Op) Valid() bool { return o >= 1 && o <= opMax }

// Decoding errors. CodeOf maps each to its wire error code.
var (
	ErrShortFrame    = errors.New("protocol: incomplete frame")
	ErrBadMagic      = errors.New("protocol: bad magic")
	ErrBadVersion    = errors.New("protocol: unsupported version")
	ErrUnknownOp     = errors.New("protocol: unknown operation")
	ErrFrameTooLarge = errors.New("protocol: frame body too large")
)

// Header is the decoded fixed header.
type Header struct {
	Version uint8
	Op      Op
	Flags   uint16
	Seq     uint32
	Length  uint32
}

// Frame is one decoded frame. Body aliases the buffer it was decoded from
// unless the caller copies it.
type Frame struct {
	Op    Op
	Flags uint16
	Seq   uint32
	Body  []byte
}

// ParseHeader decodes and validates the header at the start of b against a
// body limit. It returns ErrShortFrame when b holds fewer than HeaderSize bytes.
func ParseHeader(b []byte, maxBody int) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShortFrame
	}
	if binary.BigEndian.Uint16(b[0:2]) != Magic {
		return Header{}, ErrBadMagic
	}
	h := Header{
		Version: b[2],
		Op:      Op(b[3]),
		Flags:   binary.BigEndian.Uint16(b[4:6]),
		Seq:     binary.BigEndian.Uint32(b[6:10]),
		Length:  binary.BigEndian.Uint32(b[10:14]),
	}
	if h.Version != Version {
		return h, ErrBadVersion
	}
	if !h.Op.Valid() {
		return h, ErrUnknownOp
	}
	if uint64(h.Length) > uint64(clampMax(maxBody)) {
		return h, ErrFrameTooLarge
	}
	return h, nil
}

// Decode decodes one frame from the start of b. It returns the frame and the
// number of bytes it used, or ErrShortFrame (n == 0) when b does not yet hold
// a whole frame. Event-loop engines call it on their inbound buffer.
func Decode(b []byte, maxBody int) (Frame, int, error) {
	h, err := ParseHeader(b, maxBody)
	if err != nil {
		return Frame{}, 0, err
	}
	n := HeaderSize + int(h.Length)
	if len(b) < n {
		return Frame{}, 0, ErrShortFrame
	}
	return Frame{Op: h.Op, Flags: h.Flags, Seq: h.Seq, Body: b[HeaderSize:n:n]}, n, nil
}

// AppendHeader appends a frame header announcing a body of bodyLen bytes,
// for callers that append the body themselves.
func AppendHeader(dst []byte, op Op, flags uint16, seq uint32, bodyLen int) []byte {
	var h [HeaderSize]byte
	binary.BigEndian.PutUint16(h[0:2], Magic)
	h[2] = Version
	h[3] = byte(op)
	binary.BigEndian.PutUint16(h[4:6], flags)
	binary.BigEndian.PutUint32(h[6:10], seq)
	binary.BigEndian.PutUint32(h[10:14], uint32(bodyLen))
	return append(dst, h[:]...)
}

// AppendFrame appends an encoded frame to dst.
func AppendFrame(dst []byte, op Op, flags uint16, seq uint32, body []byte) []byte {
	return append(AppendHeader(dst, op, flags, seq, len(body)), body...)
}

// Reader reads frames from a stream, reusing one buffer that grows to the
// largest body seen (bounded by the body limit).
type Reader struct {
	r       io.Reader
	maxBody int
	hdr     [HeaderSize]byte
	buf     []byte
}

// NewReader returns a Reader enforcing maxBody (0 means DefaultMaxBodySize).
func NewReader(r io.Reader, maxBody int) *Reader {
	return &Reader{r: r, maxBody: clampMax(maxBody)}
}

// Read returns the next frame. Its Body is valid until the next call.
// A header that fails validation is returned with its error and nothing
// more is read, so the caller can answer with an ERROR frame and close.
func (r *Reader) Read() (Frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return Frame{}, err
	}
	h, err := ParseHeader(r.hdr[:], r.maxBody)
	if err != nil {
		return Frame{Op: h.Op, Seq: h.Seq}, err
	}
	body, err := r.readBody(int(h.Length))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Op: h.Op, Flags: h.Flags, Seq: h.Seq, Body: body}, nil
}

// readChunk is the first step of a body buffer that has to grow.
const readChunk = 4 << 10

// readBody reads n bytes into the reused buffer. A buffer too small grows
// as bytes arrive, doubling from readChunk, instead of to the announced
// length at once: a peer that announces 64 KiB and sends a few bytes then
// stalls holds what it sent, not what it announced, until its deadline.
func (r *Reader) readBody(n int) ([]byte, error) {
	if cap(r.buf) >= n {
		body := r.buf[:n]
		_, err := io.ReadFull(r.r, body)
		return body, err
	}
	buf := r.buf[:0]
	for len(buf) < n {
		next := min(n, max(2*len(buf), readChunk))
		if cap(buf) < next {
			nb := make([]byte, len(buf), next)
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r.r, buf[len(buf):next])
		buf = buf[:len(buf)+m]
		if err != nil {
			r.buf = buf[:0]
			return nil, err
		}
	}
	r.buf = buf
	return buf, nil
}

// Release drops the read buffer so an idle connection holds no body memory.
func (r *Reader) Release() { r.buf = nil }

func clampMax(n int) int {
	if n <= 0 {
		return DefaultMaxBodySize
	}
	if n > MaxBodySizeLimit {
		return MaxBodySizeLimit
	}
	return n
}

package protocol

import (
	"encoding/binary"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// AppendMessage appends a frame whose body is msg marshalled (nil: empty body).
func AppendMessage(dst []byte, op Op, seq uint32, msg proto.Message) ([]byte, error) {
	if msg == nil {
		return AppendFrame(dst, op, 0, seq, nil), nil
	}
	// Marshalled in place after the header, sized first: one allocation
	// (none when dst has room) rather than a body and a frame to copy it
	// into, for every frame the room encodes.
	size := proto.Size(msg)
	start := len(dst)
	out := AppendFrame(slices.Grow(dst, HeaderSize+size), op, 0, seq, nil)
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(out, msg)
	if err != nil {
		return dst, fmt.Errorf("protocol: marshal %s: %w", op, err)
	}
	binary.BigEndian.PutUint32(out[start+10:start+14], uint32(len(out)-start-HeaderSize))
	return out, nil
}

// NewBody returns an empty body message of the op's type, or nil for
// operations without a body (PING, PONG).
func NewBody(op Op) proto.Message {
	switch op {
	case OpAuth:
		return &clientpb.Auth{}
	case OpAuthReply:
		return &clientpb.AuthReply{}
	case OpPush:
		return &clientpb.Push{}
	case OpAck:
		return &clientpb.Ack{}
	case OpUplink:
		return &clientpb.Uplink{}
	case OpUplinkReply:
		return &clientpb.UplinkReply{}
	case OpKick:
		return &clientpb.Kick{}
	case OpRedirect:
		return &clientpb.Redirect{}
	case OpError:
		return &clientpb.Error{}
	case OpBind:
		return &clientpb.Bind{}
	case OpBindReply:
		return &clientpb.BindReply{}
	case OpUnbind:
		return &clientpb.Unbind{}
	case OpUnbindReply:
		return &clientpb.UnbindReply{}
	default:
		return nil
	}
}

// DecodeBody unmarshals the body of f into a new message of the op's type.
// Bodies of PING and PONG must be empty.
func DecodeBody(f Frame) (proto.Message, error) {
	m := NewBody(f.Op)
	if m == nil {
		if len(f.Body) != 0 {
			return nil, fmt.Errorf("protocol: %s carries a %d-byte body, want none", f.Op, len(f.Body))
		}
		return nil, nil
	}
	if err := proto.Unmarshal(f.Body, m); err != nil {
		return nil, fmt.Errorf("protocol: %s body: %w", f.Op, err)
	}
	return m, nil
}

// ErrorFrame encodes an ERROR frame.
func ErrorFrame(dst []byte, seq uint32, code Code, msg string) []byte {
	out, _ := AppendMessage(dst, OpError, seq, &clientpb.Error{Code: uint32(code), Message: msg})
	return out
}

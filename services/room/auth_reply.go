package main

import (
	"slices"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// AUTH_REPLY is encoded by hand: one is sent per login, and building a
// clientpb.AuthReply for proto.Marshal cost four allocations (the message,
// the session id's number and concatenation, the resume token's string)
// and the reflective marshal. TestAuthReplyWire keeps the bytes equal to
// protocol.AppendMessage's for the same fields.

// AuthReply's field numbers (proto/pushgw/client/v1/client.proto).
const (
	authReplySessionID   protowire.Number = 1
	authReplyHeartbeat   protowire.Number = 2
	authReplyServerTime  protowire.Number = 3
	authReplyMaxInflight protowire.Number = 4
	authReplyResumeToken protowire.Number = 5
	authReplyResumed     protowire.Number = 6
	authReplyResumedApps protowire.Number = 7
)

// authReplyFields are AUTH_REPLY's fields. The session id is
// "<instance>:<connID>" (session.sessionID).
type authReplyFields struct {
	instance    string
	connID      uint64
	heartbeat   uint32
	serverMs    int64
	maxInflight uint32
	token       []byte
	resumed     bool
	resumedApps []string
}

// appendAuthReply appends the AUTH_REPLY frame of seq to dst. ok is false
// when a string field is not valid UTF-8, where proto.Marshal fails too
// (and the reply was never sent): dst is returned unchanged.
func appendAuthReply(dst []byte, seq uint32, f authReplyFields) (out []byte, ok bool) {
	if !utf8.ValidString(f.instance) || !utf8.Valid(f.token) {
		return dst, false
	}
	var num [20]byte
	id := strconv.AppendUint(num[:0], f.connID, 10)
	sidLen := len(f.instance) + 1 + len(id)
	size := protowire.SizeTag(authReplySessionID) + protowire.SizeBytes(sidLen)
	if f.heartbeat != 0 {
		size += protowire.SizeTag(authReplyHeartbeat) + protowire.SizeVarint(uint64(f.heartbeat))
	}
	if f.serverMs != 0 {
		size += protowire.SizeTag(authReplyServerTime) + protowire.SizeVarint(uint64(f.serverMs))
	}
	if f.maxInflight != 0 {
		size += protowire.SizeTag(authReplyMaxInflight) + protowire.SizeVarint(uint64(f.maxInflight))
	}
	if len(f.token) > 0 {
		size += protowire.SizeTag(authReplyResumeToken) + protowire.SizeBytes(len(f.token))
	}
	if f.resumed {
		size += protowire.SizeTag(authReplyResumed) + protowire.SizeVarint(1)
	}
	for _, a := range f.resumedApps {
		if !utf8.ValidString(a) {
			return dst, false
		}
		size += protowire.SizeTag(authReplyResumedApps) + protowire.SizeBytes(len(a))
	}

	out = protocol.AppendHeader(slices.Grow(dst, protocol.HeaderSize+size), protocol.OpAuthReply, 0, seq, size)
	out = protowire.AppendTag(out, authReplySessionID, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(sidLen))
	out = append(out, f.instance...)
	out = append(out, ':')
	out = append(out, id...)
	if f.heartbeat != 0 {
		out = protowire.AppendTag(out, authReplyHeartbeat, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(f.heartbeat))
	}
	if f.serverMs != 0 {
		out = protowire.AppendTag(out, authReplyServerTime, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(f.serverMs))
	}
	if f.maxInflight != 0 {
		out = protowire.AppendTag(out, authReplyMaxInflight, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(f.maxInflight))
	}
	if len(f.token) > 0 {
		out = protowire.AppendTag(out, authReplyResumeToken, protowire.BytesType)
		out = protowire.AppendBytes(out, f.token)
	}
	if f.resumed {
		out = protowire.AppendTag(out, authReplyResumed, protowire.VarintType)
		out = protowire.AppendVarint(out, 1)
	}
	for _, a := range f.resumedApps {
		out = protowire.AppendTag(out, authReplyResumedApps, protowire.BytesType)
		out = protowire.AppendString(out, a)
	}
	return out, true
}

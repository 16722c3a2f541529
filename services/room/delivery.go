package main

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// pushFrame encodes a stored message as a PUSH frame.
func pushFrame(m *internalpb.Message) ([]byte, error) {
	return protocol.AppendMessage(nil, protocol.OpPush, 0, &clientpb.Push{
		Id: m.GetId(), App: m.GetApp(), Payload: m.GetPayload(), Qos: m.GetQos(),
		CreatedMs: m.GetCreatedMs(), ExpiresMs: m.GetExpiresMs(),
	})
}

// expired reports whether m is past its expiry.
func expired(m *internalpb.Message, now time.Time) bool {
	return m.GetExpiresMs() > 0 && m.GetExpiresMs() <= now.UnixMilli()
}

// handleAck queues the acked ids for saver.
func (r *room) handleAck(s *session, f protocol.Frame) {
	var a clientpb.Ack
	if err := proto.Unmarshal(f.Body, &a); err != nil {
		s.fail(f.Seq, protocol.CodeBadBody, "ACK body is not a valid Ack message")
		return
	}
	// Acks of broadcasts are counted here, not stored per recipient.
	ids := r.bc.countAcks(a.GetIds())
	if s.boundSet() != nil {
		ids = r.ackBound(s, ids) // those of bound apps go to their sessions
	}
	for _, id := range ids {
		r.reports.Acked(s.key.app, s.key.user, id)
	}
	if s.pending.ack(a.GetIds(), r.cfg.maxInflight(), r.reports.flushes.Load()) {
		r.pullPending(s)
	}
}

// handleUplink forwards client data to coordinator on the uplink pool and
// answers with UPLINK_REPLY of the same sequence.
func (r *room) handleUplink(s *session, f protocol.Frame) {
	var u clientpb.Uplink
	if err := proto.Unmarshal(f.Body, &u); err != nil {
		s.fail(f.Seq, protocol.CodeBadBody, "UPLINK body is not a valid Uplink message")
		return
	}
	seq := f.Seq
	req := &internalpb.UplinkRequest{
		App: s.key.app, User: s.key.user, Device: s.key.device,
		Route: u.GetRoute(), Payload: u.GetPayload(), SessionId: s.sessionID(),
	}
	err := r.uplinks.Submit(func() {
		ctx, cancel := context.WithTimeout(r.connCtx, grpcconn.DefaultCallTimeout)
		rep, err := r.coordinator.Uplink(ctx, req)
		cancel()
		if err != nil {
			r.m.peerErrors.WithLabelValues("Coordinator.Uplink").Inc()
			code := protocol.CodeUplinkFailed
			if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded {
				code = protocol.CodeUnavailable
			}
			s.sendMsg(protocol.OpUplinkReply, seq, &clientpb.UplinkReply{Code: uint32(code), Message: "uplink not delivered"})
			return
		}
		s.sendMsg(protocol.OpUplinkReply, seq, &clientpb.UplinkReply{
			Code: rep.GetCode(), Message: rep.GetMessage(), Payload: rep.GetPayload(),
		})
	})
	if err != nil {
		r.m.poolRejected.WithLabelValues("uplink").Inc()
		s.sendMsg(protocol.OpUplinkReply, seq, &clientpb.UplinkReply{
			Code: uint32(protocol.CodeUnavailable), Message: "room busy; retry later",
		})
	}
}

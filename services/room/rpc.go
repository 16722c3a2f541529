package main

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// maxRPCTargets bounds the connections one Push or Kick may name.
const maxRPCTargets = 10000

// roomRPC serves the Room gRPC service to center.
type roomRPC struct {
	internalpb.UnimplementedRoomServer
	r *room
}

func (g *roomRPC) Push(ctx context.Context, req *internalpb.RoomPushRequest) (*internalpb.RoomPushReply, error) {
	if err := checkPush(req); err != nil {
		return nil, err
	}
	return g.r.push(req), nil
}

// checkPush rejects a push that is malformed as a whole; a bad message or
// target is answered per target instead.
func checkPush(req *internalpb.RoomPushRequest) error {
	if req.GetMessage() == nil {
		return status.Error(codes.InvalidArgument, "room: push without a message")
	}
	if len(req.GetTargets()) > maxRPCTargets {
		return status.Errorf(codes.InvalidArgument, "room: %d targets, at most %d per call", len(req.GetTargets()), maxRPCTargets)
	}
	return nil
}

// push writes one message, encoded once, to each of its targets.
func (r *room) push(req *internalpb.RoomPushRequest) *internalpb.RoomPushReply {
	m := req.GetMessage()
	rep := &internalpb.RoomPushReply{Results: make([]*internalpb.TargetResult, len(req.GetTargets()))}
	frame, err := pushFrame(m)
	invalid := err != nil || len(frame)-protocol.HeaderSize > r.cfg.maxFrame || expired(m, time.Now())
	for i, t := range req.GetTargets() {
		code := internalpb.ResultCode_RESULT_CODE_INVALID
		if !invalid {
			code = r.pushTo(t, frame, m)
		}
		rep.Results[i] = &internalpb.TargetResult{ConnId: t.GetConnId(), Code: code}
	}
	return rep
}

// pushTo queues one shared PUSH frame to one target connection.
func (r *room) pushTo(t *internalpb.Target, frame []byte, m *internalpb.Message) internalpb.ResultCode {
	s, ok := r.hub.Get(t.GetConnId())
	if !ok || !s.matches(t) {
		return internalpb.ResultCode_RESULT_CODE_NOT_FOUND
	}
	qos1 := m.GetQos() == 1
	if qos1 {
		switch s.pending.admit(m.GetId(), r.cfg.maxInflight()) {
		case admitDuplicate:
			// Already written and not yet acked: the client has it.
			return internalpb.ResultCode_RESULT_CODE_OK
		case admitFull:
			// Held back: center keeps the stored copy, and the session
			// pulls it once acks make room in its window.
			r.m.inflightHeld.Inc()
			return internalpb.ResultCode_RESULT_CODE_QUEUE_FULL
		}
	}
	err := s.send(protocol.OpPush, frame)
	if err != nil && qos1 {
		s.pending.forget(m.GetId())
	}
	switch err {
	case nil:
	case errQueueFull:
		return internalpb.ResultCode_RESULT_CODE_QUEUE_FULL
	default:
		return internalpb.ResultCode_RESULT_CODE_CLOSED
	}
	r.m.pushes.Inc()
	if m.GetQos() == 1 {
		r.reports.Delivered(s.key.app, s.key.user, m.GetId())
	}
	return internalpb.ResultCode_RESULT_CODE_OK
}

func (g *roomRPC) Kick(ctx context.Context, req *internalpb.RoomKickRequest) (*internalpb.RoomKickReply, error) {
	if len(req.GetTargets()) > maxRPCTargets {
		return nil, status.Errorf(codes.InvalidArgument, "room: %d targets, at most %d per call", len(req.GetTargets()), maxRPCTargets)
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "kicked by the application"
	}
	// A newer login under the app's login policy (policy.go) asks for
	// REPLACED; anything else is a plain kick.
	kickCode := protocol.CodeKicked
	if protocol.Code(req.GetCode()) == protocol.CodeReplaced {
		kickCode = protocol.CodeReplaced
	}
	rep := &internalpb.RoomKickReply{Results: make([]*internalpb.TargetResult, len(req.GetTargets()))}
	for i, t := range req.GetTargets() {
		code := internalpb.ResultCode_RESULT_CODE_OK
		s, ok := g.r.hub.Get(t.GetConnId())
		switch {
		case !ok || !s.matches(t):
			code = internalpb.ResultCode_RESULT_CODE_NOT_FOUND
		case !s.kick(kickCode, reason):
			code = internalpb.ResultCode_RESULT_CODE_CLOSED
		}
		rep.Results[i] = &internalpb.TargetResult{ConnId: t.GetConnId(), Code: code}
	}
	return rep, nil
}

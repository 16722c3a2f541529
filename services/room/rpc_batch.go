package main

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Bounds of one PushBatch: the whole batch is validated before anything is
// written, so a call is either rejected or applied, never half-checked.
const (
	maxBatchPushes  = 1000
	maxBatchTargets = maxRPCTargets
)

// PushBatch applies each push as Push would; reply i answers push i.
func (g *roomRPC) PushBatch(ctx context.Context, req *internalpb.RoomPushBatchRequest) (*internalpb.RoomPushBatchReply, error) {
	pushes := req.GetPushes()
	if len(pushes) > maxBatchPushes {
		return nil, status.Errorf(codes.InvalidArgument, "room: %d pushes, at most %d per batch", len(pushes), maxBatchPushes)
	}
	targets := 0
	for i, p := range pushes {
		if err := checkPush(p); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "room: push %d of the batch: %s", i, status.Convert(err).Message())
		}
		targets += len(p.GetTargets())
	}
	if targets > maxBatchTargets {
		return nil, status.Errorf(codes.InvalidArgument, "room: %d targets in the batch, at most %d", targets, maxBatchTargets)
	}
	rep := &internalpb.RoomPushBatchReply{Replies: make([]*internalpb.RoomPushReply, len(pushes))}
	for i, p := range pushes {
		rep.Replies[i] = g.r.push(p)
	}
	return rep, nil
}

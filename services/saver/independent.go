package main

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// storeIndependent serves a Store of unrelated messages (center's store
// batcher joins many requests into one call): a message that fails
// validation or its commit is answered in StoreReply.failed, the others
// are stored. Only a failure that touches every message (queue full,
// stopping, deadline) fails the call.
func (s *server) storeIndependent(ctx context.Context, msgs []*internalpb.Message, fresh bool) (*internalpb.StoreReply, error) {
	if len(msgs) > maxBatch {
		return nil, invalid("batch of %d exceeds %d", len(msgs), maxBatch)
	}
	rep := &internalpb.StoreReply{}
	fail := func(id uint64, code codes.Code, msg string) {
		if rep.Failed == nil {
			rep.Failed = map[uint64]*internalpb.StoreFailure{}
		}
		rep.Failed[id] = &internalpb.StoreFailure{Code: uint32(code), Message: msg}
	}
	now := time.Now().UnixMilli()
	valid := make([]*internalpb.Message, 0, len(msgs))
	for _, m := range msgs {
		if err := checkMessage(m); err != nil {
			fail(m.GetId(), codes.InvalidArgument, status.Convert(err).Message())
			continue
		}
		if m.GetCreatedMs() == 0 {
			m.CreatedMs = now
		}
		valid = append(valid, m)
	}
	if len(valid) == 0 {
		return rep, nil
	}
	replaced, failed, err := s.committer.storeEach(ctx, valid, fresh)
	if err != nil {
		return nil, s.fail(ctx, "store", err)
	}
	rep.Replaced = replaced
	for id, err := range failed {
		s.log.Warn("store of one message failed", "id", id, "err", err)
		fail(id, codes.Unavailable, "saver: storage unavailable for this message; retry it")
	}
	return rep, nil
}

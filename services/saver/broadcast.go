package main

import (
	"context"

	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Limits of the broadcast RPCs; the string bounds match migration 0005.
const (
	maxRoomIDLen = 128
	maxTagLen    = 128
	// maxBroadcastRooms bounds the rooms one broadcast names at store time.
	maxBroadcastRooms = 1000
	// catchUpMaxLimit is the most broadcasts one login catches up on
	// (docs/protocol.md): the newest ones, oldest first.
	catchUpMaxLimit = 100
	// broadcastRetention keeps an expired broadcast (for GET
	// /v1/messages/{id}) this long before it is pruned.
	broadcastRetention  = 24 * time.Hour
	broadcastPruneBatch = 1000
)

func checkBroadcast(b *internalpb.Broadcast) error {
	switch {
	case b == nil:
		return invalid("broadcast missing")
	case b.GetId() == 0:
		return invalid("broadcast id 0")
	case b.GetApp() == "" || len(b.GetApp()) > maxAppLen:
		return invalid("broadcast %d: app must be 1..%d bytes", b.GetId(), maxAppLen)
	case len(b.GetTag()) > maxTagLen:
		return invalid("broadcast %d: tag longer than %d bytes", b.GetId(), maxTagLen)
	case b.GetTag() != "" && limits.CheckTag(b.GetTag()) != nil:
		return invalid("broadcast %d: %v", b.GetId(), limits.CheckTag(b.GetTag()))
	case len(b.GetPayload()) > maxPayload:
		return invalid("broadcast %d: payload of %d bytes exceeds %d", b.GetId(), len(b.GetPayload()), maxPayload)
	case b.GetQos() > qosAtLeastOne:
		return invalid("broadcast %d: qos %d", b.GetId(), b.GetQos())
	case b.GetExpiresMs() < 0 || b.GetCreatedMs() < 0:
		return invalid("broadcast %d: negative time", b.GetId())
	}
	return nil
}

func checkRoomID(room string) error {
	if room == "" || len(room) > maxRoomIDLen || !utf8.ValidString(room) {
		return invalid("room id must be 1..%d bytes of UTF-8", maxRoomIDLen)
	}
	return nil
}

func (s *server) StoreBroadcast(ctx context.Context, req *internalpb.StoreBroadcastRequest) (*internalpb.StoreBroadcastReply, error) {
	b := req.GetBroadcast()
	if err := checkBroadcast(b); err != nil {
		return nil, err
	}
	if len(req.GetRooms()) > maxBroadcastRooms {
		return nil, invalid("%d rooms exceed %d", len(req.GetRooms()), maxBroadcastRooms)
	}
	for _, r := range req.GetRooms() {
		if err := checkRoomID(r); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	if b.GetCreatedMs() == 0 {
		b.CreatedMs = now.UnixMilli()
	}
	seq, created, err := s.db.storeBroadcast(ctx, b, req.GetRooms(), now)
	if err != nil {
		return nil, s.fail(ctx, "store_broadcast", err)
	}
	return &internalpb.StoreBroadcastReply{Seq: seq, CreatedMs: created}, nil
}

func (s *server) BroadcastProgress(ctx context.Context, req *internalpb.BroadcastProgressRequest) (*internalpb.BroadcastProgressReply, error) {
	if len(req.GetItems()) > maxBatch {
		return nil, invalid("%d progress items exceed %d", len(req.GetItems()), maxBatch)
	}
	for _, it := range req.GetItems() {
		if it.GetBroadcastId() == 0 {
			return nil, invalid("progress of broadcast id 0")
		}
		if err := checkRoomID(it.GetRoom()); err != nil {
			return nil, err
		}
	}
	if err := s.db.addProgress(ctx, req.GetItems(), time.Now()); err != nil {
		return nil, s.fail(ctx, "broadcast_progress", err)
	}
	return &internalpb.BroadcastProgressReply{}, nil
}

func (s *server) ClaimBroadcastRooms(ctx context.Context, req *internalpb.ClaimBroadcastRoomsRequest) (*internalpb.ClaimBroadcastRoomsReply, error) {
	if req.GetMinAgeMs() < 0 {
		return nil, invalid("min_age_ms %d is negative", req.GetMinAgeMs())
	}
	limit := int(req.GetLimit())
	if limit == 0 || limit > claimMaxLimit {
		limit = claimMaxLimit
	}
	claims, err := s.db.claimBroadcastRooms(ctx, limit, time.Duration(req.GetMinAgeMs())*time.Millisecond, time.Now())
	if err != nil {
		return nil, s.fail(ctx, "claim_broadcast_rooms", err)
	}
	return &internalpb.ClaimBroadcastRoomsReply{Claims: claims}, nil
}

func (s *server) BroadcastStatus(ctx context.Context, req *internalpb.BroadcastStatusRequest) (*internalpb.BroadcastStatusReply, error) {
	if req.GetApp() == "" || len(req.GetApp()) > maxAppLen {
		return nil, invalid("app must be 1..%d bytes", maxAppLen)
	}
	if req.GetId() == 0 {
		return nil, invalid("id 0")
	}
	rep, err := s.db.broadcastStatus(ctx, req.GetApp(), req.GetId())
	if err != nil {
		return nil, s.fail(ctx, "broadcast_status", err)
	}
	return rep, nil
}

func (s *server) CatchUp(ctx context.Context, req *internalpb.CatchUpRequest) (*internalpb.CatchUpReply, error) {
	if req.GetApp() == "" || len(req.GetApp()) > maxAppLen {
		return nil, invalid("app must be 1..%d bytes", maxAppLen)
	}
	limit := int(req.GetLimit())
	if limit == 0 || limit > catchUpMaxLimit {
		limit = catchUpMaxLimit
	}
	tags, err := s.catchUpTags(ctx, req.GetApp(), req.GetUser())
	if err != nil {
		return nil, err
	}
	out, err := s.db.catchUp(ctx, req.GetApp(), req.GetAfterSeq(), limit, req.GetOnlineSinceMs(), tags, time.Now())
	if err != nil {
		return nil, s.fail(ctx, "catch_up", err)
	}
	return &internalpb.CatchUpReply{Broadcasts: out}, nil
}

// pruneBroadcastsLoop deletes broadcasts broadcastRetention past their
// expiry, every interval, until ctx ends.
func pruneBroadcastsLoop(ctx context.Context, db *msgDB, log *slog.Logger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, sweepTimeout)
		n, err := db.pruneBroadcasts(pctx, time.Now().Add(-broadcastRetention), broadcastPruneBatch)
		cancel()
		if err != nil {
			log.Error("broadcast prune failed", "err", err)
		} else if n > 0 {
			log.Info("broadcasts pruned", "count", n)
		}
	}
}

// catchUpTags returns the tags whose broadcasts user may catch up on: its
// tags now (Redis when it holds the user's set, else MySQL). No user, or a
// saver without tags, catches up on app-wide broadcasts only. A failed
// read fails the catch-up (the room retries it) rather than silently
// leaving the member's tag broadcasts out.
func (s *server) catchUpTags(ctx context.Context, app, user string) ([]string, error) {
	if user == "" || s.tags == nil {
		return nil, nil
	}
	rep, err := s.UserTags(ctx, &internalpb.UserTagsRequest{App: app, User: user})
	if err != nil {
		return nil, err
	}
	return rep.GetTags(), nil
}

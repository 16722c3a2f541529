package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// server implements internalpb.SaverServer.
type server struct {
	internalpb.UnimplementedSaverServer
	db            *msgDB
	inbox         *inbox
	committer     *committer
	metrics       *metrics
	log           *slog.Logger
	maxDeliveries uint32
	// tags serves the tag RPCs (tags.go); nil answers Unimplemented.
	tags *tagStore
	// multi holds a slot per StoreMulti committing (multiSlots).
	multi chan struct{}
}

// fail maps an internal error to a status; details stay in the log.
func (s *server) fail(ctx context.Context, method string, err error) error {
	switch {
	case errors.Is(err, errQueueFull):
		return status.Error(codes.ResourceExhausted, "saver: store queue full, retry later")
	case errors.Is(err, errStopped):
		return status.Error(codes.Unavailable, "saver: shutting down")
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	s.log.Error("call failed", "method", method, "err", err)
	return status.Errorf(codes.Unavailable, "saver: %s: storage unavailable", method)
}

func (s *server) Store(ctx context.Context, req *internalpb.StoreRequest) (*internalpb.StoreReply, error) {
	if req.GetIndependent() {
		return s.storeIndependent(ctx, req.GetMessages(), req.GetFresh())
	}
	msgs := req.GetMessages()
	if err := checkMessages(msgs); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return &internalpb.StoreReply{}, nil
	}
	now := time.Now().UnixMilli()
	for _, m := range msgs {
		if m.GetCreatedMs() == 0 {
			m.CreatedMs = now
		}
	}
	replaced, err := s.committer.store(ctx, msgs)
	if err != nil {
		return nil, s.fail(ctx, "store", err)
	}
	return &internalpb.StoreReply{Replaced: replaced}, nil
}

func (s *server) Pending(ctx context.Context, req *internalpb.PendingRequest) (*internalpb.PendingReply, error) {
	if err := checkUser(req.GetApp(), req.GetUser()); err != nil {
		return nil, invalid("%v", err)
	}
	if len(req.GetDevice()) > maxDeviceLen {
		return nil, invalid("device longer than %d bytes", maxDeviceLen)
	}
	u, limit, now := userRef{req.GetApp(), req.GetUser()}, pendingLimit(req.GetLimit()), time.Now()
	cands, err := s.candidates(ctx, u, req.GetDevice(), req.GetAfterId(), limit, now)
	if err != nil {
		return nil, s.fail(ctx, "pending", err)
	}
	if len(cands) == 0 {
		return &internalpb.PendingReply{}, nil
	}
	ids := make([]uint64, len(cands))
	for i, m := range cands {
		ids[i] = m.GetId()
	}
	// MySQL decides: the count there is the truth, and an id it no longer
	// has was acked or swept while Redis still listed it.
	counts, err := s.db.counts(ctx, u, ids)
	if err != nil {
		return nil, s.fail(ctx, "pending", err)
	}
	var live []*internalpb.Message
	var liveIDs, dead []uint64
	var stale []msgRef
	for _, m := range cands {
		n, ok := counts[m.GetId()]
		switch {
		case !ok:
			stale = append(stale, msgRef{u.app, u.user, m.GetId()})
		case n >= s.maxDeliveries:
			dead = append(dead, m.GetId())
		default:
			m.DeliveryCount = n + 1
			m.State = internalpb.MessageState_MESSAGE_STATE_DELIVERED
			live = append(live, m)
			liveIDs = append(liveIDs, m.GetId())
		}
	}
	if len(dead) > 0 {
		s.bury(ctx, u, dead, now)
	}
	if len(stale) > 0 {
		if err := s.inbox.remove(ctx, stale); err != nil {
			s.redisFailed("pending", err)
		}
	}
	if err := s.db.markDelivered(ctx, liveIDs, now); err != nil {
		return nil, s.fail(ctx, "pending", err)
	}
	s.metrics.delivered.WithLabelValues("pending").Add(float64(len(live)))
	return &internalpb.PendingReply{Messages: byPriority(live)}, nil
}

// candidates reads the inbox, or MySQL when the inbox cannot be trusted,
// refilling the inbox from what MySQL returned.
func (s *server) candidates(ctx context.Context, u userRef, device string, after uint64, limit int, now time.Time) ([]*internalpb.Message, error) {
	msgs, err := s.inbox.read(ctx, u, device, after, limit, now)
	if err == nil {
		return msgs, nil
	}
	if !errors.Is(err, errInboxUntrusted) {
		s.redisFailed("pending", err)
	}
	s.metrics.pendingFallback.Inc()
	all, complete, err := s.db.loadUser(ctx, u, now)
	if err != nil {
		return nil, err
	}
	if err := s.inbox.fill(ctx, u, all, complete); err != nil {
		s.redisFailed("fill", err)
	}
	msgs = msgs[:0]
	for _, m := range all {
		if visible(m, device, after, now) {
			msgs = append(msgs, m)
			if len(msgs) == limit {
				break
			}
		}
	}
	return msgs, nil
}

// bury drops messages delivered -max-deliveries times without an ack: a
// client that loads but never acks must not get them forever.
func (s *server) bury(ctx context.Context, u userRef, ids []uint64, now time.Time) {
	gone, err := s.db.finish(ctx, internalpb.MessageState_MESSAGE_STATE_DEAD, ids, now, func(r *finishedRow) bool {
		return r.app == u.app && r.user == u.user && r.deliveryCount >= s.maxDeliveries
	})
	if err != nil {
		// They stay stored and are tried again at the next Pending.
		s.log.Error("dead messages not removed", "app", u.app, "count", len(ids), "err", err)
		return
	}
	for _, r := range gone {
		s.log.Warn("message dead after max deliveries", "id", r.id, "app", r.app, "max_deliveries", s.maxDeliveries)
	}
	s.metrics.outcomes.WithLabelValues("dead").Add(float64(len(gone)))
	if err := s.inbox.remove(ctx, gone); err != nil {
		s.redisFailed("pending", err)
	}
}

func (s *server) redisFailed(op string, err error) {
	s.metrics.redisErrors.WithLabelValues(op).Inc()
	s.log.Warn("redis failed; MySQL still serves", "op", op, "err", err)
}

func toRefs(in []*internalpb.MessageRef) []msgRef {
	out := make([]msgRef, 0, len(in))
	seen := make(map[msgRef]bool, len(in))
	for _, r := range in {
		ref := msgRef{r.GetApp(), r.GetUser(), r.GetId()}
		if !seen[ref] {
			seen[ref] = true
			out = append(out, ref)
		}
	}
	return out
}

func (s *server) Report(ctx context.Context, req *internalpb.ReportRequest) (*internalpb.ReportReply, error) {
	if err := checkRefs("acked", req.GetAcked()); err != nil {
		return nil, err
	}
	if err := checkRefs("delivered", req.GetDelivered()); err != nil {
		return nil, err
	}
	now := time.Now()
	s.metrics.reportRefs.WithLabelValues("acked").Observe(float64(len(req.GetAcked())))
	s.metrics.reportRefs.WithLabelValues("delivered").Observe(float64(len(req.GetDelivered())))
	acked := toRefs(req.GetAcked())
	// A push acked in this same report is counted delivered by its ack
	// (report_batch.go); the rest are marked first, so the outcome row of
	// a message acked in a later report counts this delivery.
	delivered, deliveredToo := splitDelivered(toRefs(req.GetDelivered()), acked)
	if len(delivered) > 0 {
		n, err := s.db.markOwnedDelivered(ctx, delivered, now)
		if err != nil {
			return nil, s.fail(ctx, "report", err)
		}
		s.metrics.delivered.WithLabelValues("report").Add(float64(n))
	}
	if len(acked) > 0 {
		// One ref per id, the last one deciding whose message it is.
		owner := make(map[uint64]int, len(acked))
		refs := make([]msgRef, 0, len(acked))
		for _, r := range acked {
			if i, dup := owner[r.id]; dup {
				refs[i] = r
				continue
			}
			owner[r.id] = len(refs)
			refs = append(refs, r)
		}
		gone, failed, err := s.db.finishIsolated(ctx, internalpb.MessageState_MESSAGE_STATE_ACKED, refs, now, func(r *finishedRow) {
			if deliveredToo[r.msgRef] {
				r.deliveryCount++
			}
		})
		alsoDelivered := 0
		for _, r := range gone {
			if deliveredToo[r] {
				alsoDelivered++
			}
		}
		s.metrics.delivered.WithLabelValues("report").Add(float64(alsoDelivered))
		s.metrics.outcomes.WithLabelValues("acked").Add(float64(len(gone)))
		if err != nil {
			if len(failed) == len(refs) {
				return nil, s.fail(ctx, "report", err)
			}
			// The others landed; these stay stored and are sent and
			// acked again.
			s.metrics.ackFailed.Add(float64(len(failed)))
			s.log.Warn("saver: acks left stored; their batch-mates landed", "failed", len(failed), "acked", len(gone), "err", err)
		}
		// Every ref is removed from its own inbox, not only those MySQL
		// still had: a repeated ack also clears a stale inbox entry, and a
		// ref naming another user's id touches only its own (empty) slot.
		// Refs whose finish failed stay, as their rows do.
		if len(failed) > 0 {
			left := make(map[uint64]bool, len(failed))
			for _, id := range failed {
				left[id] = true
			}
			kept := acked[:0:0]
			for _, r := range acked {
				if !left[r.id] {
					kept = append(kept, r)
				}
			}
			acked = kept
		}
		if err := s.inbox.remove(ctx, acked); err != nil {
			s.redisFailed("report", err)
		}
	}
	return &internalpb.ReportReply{}, nil
}

func (s *server) Status(ctx context.Context, req *internalpb.StatusRequest) (*internalpb.StatusReply, error) {
	if req.GetApp() == "" || len(req.GetApp()) > maxAppLen {
		return nil, invalid("app must be 1..%d bytes", maxAppLen)
	}
	if req.GetId() == 0 {
		return nil, invalid("id 0")
	}
	r, err := s.db.status(ctx, req.GetApp(), req.GetId())
	if err != nil {
		return nil, s.fail(ctx, "status", err)
	}
	return r, nil
}

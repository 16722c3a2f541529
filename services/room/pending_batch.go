package main

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Pulls of pending messages are batched: the logins of one register flush
// run their pulls together (sessions.go), and one Saver.PendingBatch call
// answers them all, most of them from Redis alone (saver's
// pending_batch.go). A pull for one session costs a slot in a batch, not a
// call and a pool worker of its own.
//
// Nothing here blocks a caller: pulls are queued with a non-blocking Add on
// a bounded batcher; its single flusher hands each batch to the pending
// pool with a non-blocking Submit, so a slow saver holds pool workers, not
// the flusher, and never register's flusher or an event loop. A pull shed
// (queue or pool full) is retried later like a failed one.
const (
	// pullBatchSize stays within saver's bound of 1,000 per call.
	pullBatchSize = defaultBatchSize
	// pullBatchDelay is the flush window: a pull waits at most this long
	// for others to join it.
	pullBatchDelay = defaultBatchDelay
	// pullBatchQueue bounds the pulls waiting for a flush.
	pullBatchQueue = 16 << 10
	// pullCloseWait bounds the flush of queued pulls when the room closes.
	pullCloseWait = time.Second
)

// errPullShed is the failure recorded for a pull that found no room.
var errPullShed = errors.New("room: pending pull shed: queue or pool full")

// pullReq is one session's pull waiting for a batch.
type pullReq struct {
	s     *session
	after uint64
}

// puller batches pulls into Saver.PendingBatch calls.
type puller struct {
	r *room
	b *batcher[pullReq]
	// single is set once saver answered Unimplemented (a saver older than
	// PendingBatch, during an upgrade): pulls then go one call each.
	single atomic.Bool
}

func newPuller(r *room, size int, delay time.Duration) *puller {
	p := &puller{r: r}
	p.b = newBatcher(size, delay, pullBatchQueue, p.flush, r.m.batchDropped.WithLabelValues("pending").Inc)
	return p
}

// add queues a pull that s.pending.start began; false when it was shed.
func (p *puller) add(s *session, after uint64) bool {
	return p.b.Add(pullReq{s: s, after: after})
}

// close flushes what is queued (its pulls fail once the pool is gone).
func (p *puller) close() {
	ctx, cancel := context.WithTimeout(context.Background(), pullCloseWait)
	defer cancel()
	_ = p.b.Close(ctx)
}

// flush runs on the batcher's goroutine: it only hands the batch over.
func (p *puller) flush(items []pullReq) {
	batch := slices.Clone(items) // the batcher reuses items
	r := p.r
	if err := r.pending.Submit(func() { p.call(batch) }); err != nil {
		r.m.poolRejected.WithLabelValues("pending").Inc()
		for _, it := range batch {
			r.retryPending(it.s, it.s.pending.done(0, false, errPullShed))
		}
	}
}

// call asks saver for every pull of one batch and delivers the answers.
func (p *puller) call(items []pullReq) {
	r := p.r
	limit := r.cfg.maxInflight()
	live := items[:0]
	req := &internalpb.PendingBatchRequest{Requests: make([]*internalpb.PendingRequest, 0, len(items))}
	// The requests live in one slab: one allocation per batch, not one
	// per login.
	slab := make([]internalpb.PendingRequest, len(items))
	for _, it := range items {
		if it.s.has(flagClosed) {
			continue // nobody to deliver to; the next login pulls
		}
		live = append(live, it)
		k := it.s.key
		pr := &slab[len(req.Requests)]
		pr.App, pr.User, pr.Device, pr.Limit, pr.AfterId = k.app, k.user, k.device, uint32(limit), it.after
		req.Requests = append(req.Requests, pr)
	}
	if len(live) == 0 {
		return
	}
	r.m.pullBatches.Inc()
	ctx, cancel := context.WithTimeout(r.connCtx, grpcconn.DefaultCallTimeout)
	rep, err := r.saver.PendingBatch(ctx, req)
	cancel()
	if status.Code(err) == codes.Unimplemented {
		r.log.Info("room: saver has no PendingBatch; pulling one session per call")
		p.single.Store(true)
		for _, it := range live {
			p.one(it)
		}
		return
	}
	if err == nil && len(rep.GetReplies()) != len(live) {
		err = status.Errorf(codes.Internal, "saver answered %d of %d pulls", len(rep.GetReplies()), len(live))
	}
	if err != nil {
		r.m.peerErrors.WithLabelValues("Saver.PendingBatch").Inc()
		r.log.Debug("room: pending batch failed", "sessions", len(live), "err", err)
		for _, it := range live {
			r.retryPending(it.s, it.s.pending.done(0, false, err))
		}
		return
	}
	for i, e := range rep.GetReplies() {
		s := live[i].s
		switch {
		case e.GetDeferred():
			// Not tried (the reply was full): ask again in the next batch.
			s.pending.done(0, true, nil)
			r.pullPending(s)
		case e.GetFailed():
			r.m.peerErrors.WithLabelValues("Saver.PendingBatch").Inc()
			r.log.Debug("room: pending pull failed", "conn", s.id, "err", e.GetError())
			r.retryPending(s, s.pending.done(0, false, errors.New(e.GetError())))
		default:
			r.applyPending(s, e.GetMessages(), limit)
		}
	}
}

// one pulls for a single session on its own pool task, as before batching.
func (p *puller) one(it pullReq) {
	r := p.r
	if err := r.pending.Submit(func() { r.deliverPending(it.s, it.after) }); err != nil {
		r.m.poolRejected.WithLabelValues("pending").Inc()
		r.retryPending(it.s, it.s.pending.done(0, false, err))
	}
}

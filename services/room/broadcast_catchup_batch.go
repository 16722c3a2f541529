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

// Catch-up reads are batched like pending pulls (pending_batch.go): the
// reads of one flush window go in one Saver.CatchUpBatch call, which
// shares one MySQL read among the logins of one app that report the same
// last seq (saver's catchup_batch.go). A login's catch-up costs a slot in
// a batch, not a call and a pool worker of its own.
//
// The steps of one catch-up are those of catchUp (broadcast_catchup.go),
// each read a trip through the batcher: the first read (retried on
// failure with retryDelays), then live broadcasts resume and a last read
// (catchUpFinalTries tries catchUpFinalPause apart). Nothing blocks a
// caller: reads are queued with a non-blocking Add on a bounded batcher,
// whose flusher hands each batch to the catch-up pool with a non-blocking
// Submit. A read shed (queue or pool full) counts as a failed read.
const (
	// catchUpBatchSize stays within saver's bound of 1,000 per call.
	catchUpBatchSize = defaultBatchSize
	// catchUpBatchDelay is the flush window.
	catchUpBatchDelay = defaultBatchDelay
	// catchUpBatchQueue bounds the reads waiting for a flush.
	catchUpBatchQueue = 16 << 10
	// catchUpCloseWait bounds the flush of queued reads when the room
	// closes.
	catchUpCloseWait = time.Second
)

// errCatchUpShed is the failure recorded for a read that found no room.
var errCatchUpShed = errors.New("room: broadcast catch-up read shed: queue or pool full")

// catchUpReq is one read of one login's catch-up waiting for a batch.
type catchUpReq struct {
	s       *session
	after   uint64
	loginMs int64
	// attempt counts failed first reads; final > 0 makes this the last
	// read, its final-th try.
	attempt int
	final   int
}

// catchUpBatcher batches catch-up reads into Saver.CatchUpBatch calls.
type catchUpBatcher struct {
	bc *broadcaster
	b  *batcher[catchUpReq]
	// single is set once saver answered Unimplemented (a saver older than
	// CatchUpBatch, during an upgrade): catch-ups then read one call each.
	single atomic.Bool
}

func newCatchUpBatcher(bc *broadcaster, size int, delay time.Duration) *catchUpBatcher {
	cb := &catchUpBatcher{bc: bc}
	cb.b = newBatcher(size, delay, catchUpBatchQueue, cb.flush, bc.r.m.batchDropped.WithLabelValues("catchup").Inc)
	return cb
}

// add queues a read; when it is shed the read counts as failed.
func (cb *catchUpBatcher) add(it catchUpReq) {
	if !cb.b.Add(it) {
		cb.failed(it, errCatchUpShed)
	}
}

// close flushes what is queued (its reads fail once the pool is gone).
func (cb *catchUpBatcher) close() {
	ctx, cancel := context.WithTimeout(context.Background(), catchUpCloseWait)
	defer cancel()
	_ = cb.b.Close(ctx)
}

// flush runs on the batcher's goroutine: it only hands the batch over.
func (cb *catchUpBatcher) flush(items []catchUpReq) {
	batch := slices.Clone(items) // the batcher reuses items
	bc := cb.bc
	if err := bc.catchUps.Submit(func() { cb.call(batch) }); err != nil {
		bc.r.m.poolRejected.WithLabelValues("catchup").Inc()
		for _, it := range batch {
			cb.failed(it, errCatchUpShed)
		}
	}
}

// call reads for every request of one batch and goes on with each
// catch-up.
func (cb *catchUpBatcher) call(items []catchUpReq) {
	bc := cb.bc
	r := bc.r
	live := items[:0]
	req := &internalpb.CatchUpBatchRequest{Requests: make([]*internalpb.CatchUpRequest, 0, len(items))}
	// The requests live in one slab: one allocation per batch, not one
	// per login.
	slab := make([]internalpb.CatchUpRequest, len(items))
	for _, it := range items {
		if it.s.has(flagClosed) {
			continue // nobody to catch up
		}
		live = append(live, it)
		req.Requests = append(req.Requests, setCatchUpRequest(&slab[len(req.Requests)], it.s.key, it.after, it.loginMs))
	}
	if len(live) == 0 {
		return
	}
	r.m.catchUpBatches.Inc()
	ctx, cancel := context.WithTimeout(r.connCtx, grpcconn.DefaultCallTimeout)
	rep, err := r.saver.CatchUpBatch(ctx, req)
	cancel()
	if status.Code(err) == codes.Unimplemented {
		r.log.Info("room: saver has no CatchUpBatch; catching up one login per call")
		cb.single.Store(true)
		for _, it := range live {
			cb.one(it)
		}
		return
	}
	if err == nil && len(rep.GetEntries()) != len(live) {
		err = status.Errorf(codes.Internal, "saver answered %d of %d catch-ups", len(rep.GetEntries()), len(live))
	}
	if err != nil {
		r.m.peerErrors.WithLabelValues("Saver.CatchUpBatch").Inc()
		r.log.Debug("room: broadcast catch-up batch failed", "logins", len(live), "err", err)
		for _, it := range live {
			cb.failed(it, err)
		}
		return
	}
	all := rep.GetBroadcasts()
	for i, e := range rep.GetEntries() {
		it := live[i]
		if e.GetDeferred() {
			cb.add(it) // not tried (the reply was full): the next batch
			continue
		}
		if e.GetFailed() {
			r.m.peerErrors.WithLabelValues("Saver.CatchUpBatch").Inc()
			cb.failed(it, errors.New(e.GetError()))
			continue
		}
		list := make([]*internalpb.Broadcast, 0, len(e.GetBroadcasts()))
		bad := false
		for _, n := range e.GetBroadcasts() {
			if int(n) >= len(all) {
				bad = true
				break
			}
			list = append(list, all[n])
		}
		if bad {
			cb.failed(it, status.Errorf(codes.Internal, "saver named a broadcast past the %d of its reply", len(all)))
			continue
		}
		cb.read(it, list)
	}
}

// read goes on with a catch-up whose read answered list.
func (cb *catchUpBatcher) read(it catchUpReq, list []*internalpb.Broadcast) {
	bc := cb.bc
	last := bc.give(it.s, list, it.after)
	if it.final > 0 {
		bc.r.m.catchUps.WithLabelValues("ok").Inc()
		return
	}
	bc.seen.caughtUp(it.s)
	cb.add(catchUpReq{s: it.s, after: last, loginMs: it.loginMs, final: 1})
}

// failed handles a read that failed: a first read is retried after its
// delay (or given up), a last read is tried again shortly, at most
// catchUpFinalTries times.
func (cb *catchUpBatcher) failed(it catchUpReq, err error) {
	bc := cb.bc
	if it.final == 0 {
		bc.r.log.Debug("room: broadcast catch-up read failed", "conn", it.s.id, "err", err)
		bc.retryCatchUp(it.s, it.after, it.loginMs, it.attempt)
		return
	}
	if it.final >= catchUpFinalTries {
		bc.r.log.Warn("room: last broadcast catch-up read failed", "conn", it.s.id, "app", it.s.key.app, "err", err)
		bc.r.m.catchUps.WithLabelValues("given_up").Inc()
		return
	}
	it.final++
	bc.r.later.After(catchUpFinalPause, func() { cb.add(it) })
}

// one reads for a single catch-up on its own pool task, as before
// batching.
func (cb *catchUpBatcher) one(it catchUpReq) {
	bc := cb.bc
	task := func() { bc.catchUp(it.s, it.after, it.loginMs, it.attempt) }
	if it.final > 0 {
		task = func() { bc.finalReads(it.s, it.after, it.loginMs) }
	}
	if err := bc.catchUps.Submit(task); err != nil {
		bc.r.m.poolRejected.WithLabelValues("catchup").Inc()
		if it.final == 0 {
			bc.retryCatchUp(it.s, it.after, it.loginMs, it.attempt)
			return
		}
		task() // the last read must not be lost: this worker runs it
	}
}

// catchUpRequest is the CatchUp request of k's read after seq.
func catchUpRequest(k sessionKey, after uint64, loginMs int64) *internalpb.CatchUpRequest {
	return setCatchUpRequest(new(internalpb.CatchUpRequest), k, after, loginMs)
}

// setCatchUpRequest fills q, a zero request, as catchUpRequest's.
func setCatchUpRequest(q *internalpb.CatchUpRequest, k sessionKey, after uint64, loginMs int64) *internalpb.CatchUpRequest {
	q.App, q.User, q.AfterSeq, q.Limit, q.OnlineSinceMs = k.app, k.user, after, catchUpLimit, loginMs
	return q
}

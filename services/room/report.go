package main

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Saver report policy: an unreported ACK is not lost (the message is sent
// again and the SDK drops the copy) but an app restarted in between sees it
// twice, so a batch is retried across a saver restart or a brief discovery
// gap: 50 ms doubling, about 6 s in all. The batcher's bounded queue holds
// what arrives meanwhile.
const (
	reportAttempts = 8
	reportBackoff  = 50 * time.Millisecond
)

// reportItem is one ack or delivery of one message.
type reportItem struct {
	acked     bool
	app, user string
	id        uint64
}

// reporter batches acks and deliveries from all connections into
// Saver.Report calls.
type reporter struct {
	r *room
	b *batcher[reportItem]
	// hold keeps delivery reports until their ACK (report_hold.go).
	hold *deliveryHold
	// flushes counts finished flushes (sent or given up): sessions use it
	// to know when saver has been told of an ack.
	flushes atomic.Uint64
}

func newReporter(r *room) *reporter {
	rp := &reporter{r: r}
	drop := r.m.batchDropped.WithLabelValues("report")
	rp.b = newBatcher(defaultBatchSize, defaultBatchDelay, defaultBatchQueue, rp.flush, drop.Inc)
	add := func(it reportItem) { rp.b.Add(it) }
	folded := r.m.deliveriesFolded
	rp.hold = newDeliveryHold(r.cfg.reportHold, holdTick, maxHeldDeliveries, add, func(n int) { folded.Add(float64(n)) })
	held := r.m.deliveriesHeld
	rp.hold.heldGauge = func(n int) { held.Set(float64(n)) }
	return rp
}

// Acked queues an ack from a client. Id 0 names no message: saver would
// refuse the whole Report for it, failing every other ack of the flush
// window, so it is dropped here.
func (rp *reporter) Acked(app, user string, id uint64) {
	if id == 0 {
		return
	}
	rp.hold.Acked(app, user, id)
}

// Delivered queues a QoS 1 push written to a client; it waits for the
// push's ACK for a while (report_hold.go).
func (rp *reporter) Delivered(app, user string, id uint64) {
	rp.hold.Delivered(app, user, id)
}

func (rp *reporter) flush(items []reportItem) {
	defer rp.flushes.Add(1)
	req := buildReport(items)
	var refused error
	err := retry(reportAttempts, reportBackoff, rp.r.life.Done(), func() error {
		ctx, cancel := context.WithTimeout(rp.r.life, grpcconn.DefaultCallTimeout)
		defer cancel()
		_, err := rp.r.saver.Report(ctx, req)
		if err != nil {
			rp.r.m.peerErrors.WithLabelValues("Saver.Report").Inc()
		}
		if status.Code(err) == codes.InvalidArgument {
			// The same batch would be refused again: retrying only holds
			// the next flush windows back for the whole backoff.
			refused = err
			return nil
		}
		return err
	})
	if refused != nil {
		err = refused
	}
	if err != nil {
		// Unreported acks are redelivered and deduplicated by the SDK;
		// unreported deliveries only undercount.
		rp.r.m.batchFailed.WithLabelValues("report").Inc()
		rp.r.log.Warn("room: report batch failed", "acked", len(req.Acked), "delivered", len(req.Delivered), "err", err)
	}
}

func buildReport(items []reportItem) *internalpb.ReportRequest {
	req := &internalpb.ReportRequest{}
	for _, it := range items {
		ref := &internalpb.MessageRef{App: it.app, User: it.user, Id: it.id}
		if it.acked {
			req.Acked = append(req.Acked, ref)
		} else {
			req.Delivered = append(req.Delivered, ref)
		}
	}
	return req
}

// Close flushes what is held and queued within ctx.
func (rp *reporter) Close(ctx context.Context) error {
	rp.hold.Close()
	return rp.b.Close(ctx)
}

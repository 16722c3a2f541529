package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// A Report carries the acks and deliveries of every connection of a room
// for one flush window (room's reporter: up to 500 items or 5 ms). Two
// things keep that batch cheap and safe:
//
//   - A message delivered and acked in the same window (a client answering
//     within a few ms, the common case) is not marked delivered first: its
//     ack moves it to message_outcomes with the delivery counted there, so
//     the window costs one transaction instead of an UPDATE and a
//     transaction (report_db.go has the statements).
//   - One ack whose rows cannot be moved must not fail its batch-mates: a
//     failed finish is split in halves and each half tried again, down to
//     the single failing message, which is left stored (it is sent again
//     and acked again later) while every other ack of the window lands.

// splitDelivered returns the delivered refs not also acked in this report,
// and the acked ids that were delivered in it.
func splitDelivered(delivered, acked []msgRef) (rest []msgRef, deliveredToo map[msgRef]bool) {
	if len(delivered) == 0 || len(acked) == 0 {
		return delivered, nil
	}
	ack := make(map[msgRef]bool, len(acked))
	for _, r := range acked {
		ack[r] = true
	}
	rest = delivered[:0:0]
	for _, r := range delivered {
		if ack[r] {
			if deliveredToo == nil {
				deliveredToo = make(map[msgRef]bool)
			}
			deliveredToo[r] = true
			continue
		}
		rest = append(rest, r)
	}
	return rest, deliveredToo
}

// finishIsolated is finishOwned that isolates failures: on an error the
// refs are split and each half finished on its own, so only the refs
// whose own rows fail stay behind. It returns what was finished and the
// ids left, with the first error met.
func (d *msgDB) finishIsolated(ctx context.Context, outcome internalpb.MessageState, refs []msgRef, now time.Time, adjust func(*finishedRow)) (done []msgRef, failed []uint64, err error) {
	if len(refs) == 0 {
		return nil, nil, nil
	}
	done, err = d.finishOwned(ctx, outcome, refs, now, adjust)
	if err == nil {
		return done, nil, nil
	}
	if len(refs) == 1 || ctx.Err() != nil {
		failed = make([]uint64, len(refs))
		for i, r := range refs {
			failed[i] = r.id
		}
		return nil, failed, err
	}
	half := len(refs) / 2
	doneA, failedA, errA := d.finishIsolated(ctx, outcome, refs[:half], now, adjust)
	doneB, failedB, errB := d.finishIsolated(ctx, outcome, refs[half:], now, adjust)
	if errA == nil {
		errA = errB
	}
	return append(doneA, doneB...), append(failedA, failedB...), errA
}

// addReportMetrics registers the Report batch metrics: how many refs a
// room's flush window carries (the batching the ACK path relies on) and
// the acks left stored by a failure their batch-mates did not share.
func (m *metrics) addReportMetrics(reg prometheus.Registerer) {
	m.ackFailed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_saver_report_ack_failed_total",
		Help: "Acks of a Report left stored because their own rows could not be finished, while the rest of the batch was.",
	})
	m.reportRefs = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushgw_saver_report_refs",
		Help:    "Refs per Report call (one room flush window), by kind (acked, delivered).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11),
	}, []string{"kind"})
	reg.MustRegister(m.ackFailed, m.reportRefs)
}

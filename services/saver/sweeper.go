package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Sweeping works in bounded batches so one tick never holds locks on, or
// deletes, more than sweepBatch rows per statement, and stops after
// sweepMaxBatches so a large backlog is worked off over several ticks.
// Several savers may sweep at once: finish locks the rows it claims and
// re-checks them, so each expired row is moved exactly once.
const (
	sweepBatch      = 1000
	sweepMaxBatches = 50
	sweepTimeout    = 30 * time.Second
)

type sweeper struct {
	db        *msgDB
	inbox     *inbox
	metrics   *metrics
	log       *slog.Logger
	interval  time.Duration
	retention time.Duration
	// collapse is the walk over message_collapse_keys (collapse_prune.go);
	// only run's goroutine (or a test) sweeps.
	collapse collapseCursor
}

func (w *sweeper) run(ctx context.Context) {
	// Jitter keeps savers started together from sweeping in lockstep.
	first := time.Duration(rand.Int64N(int64(w.interval)))
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.sweep(ctx, time.Now())
		t.Reset(w.interval)
	}
}

// sweep finishes expired messages and prunes old outcomes; it returns how
// many messages it expired.
func (w *sweeper) sweep(ctx context.Context, now time.Time) int {
	ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	expired := 0
	for i := 0; i < sweepMaxBatches; i++ {
		ids, err := w.db.expiredIDs(ctx, now, sweepBatch)
		if err != nil {
			w.log.Error("sweep failed", "err", err)
			break
		}
		if len(ids) == 0 {
			break
		}
		gone, err := w.db.finish(ctx, internalpb.MessageState_MESSAGE_STATE_EXPIRED, ids, now, func(r *finishedRow) bool {
			return r.expiresMs > 0 && r.expiresMs <= now.UnixMilli()
		})
		if err != nil {
			w.log.Error("sweep failed", "err", err)
			break
		}
		expired += len(gone)
		w.metrics.outcomes.WithLabelValues("expired").Add(float64(len(gone)))
		if err := w.inbox.remove(ctx, gone); err != nil {
			w.metrics.redisErrors.WithLabelValues("sweep").Inc()
			w.log.Warn("sweep: inbox remove failed", "err", err)
		}
		if len(ids) < sweepBatch {
			break
		}
	}
	pruned := w.prune(ctx, now, w.db.pruneOutcomes)
	keys := w.prune(ctx, now, w.db.pruneKeys)
	heads := w.pruneCollapseKeys(ctx)
	if expired > 0 || pruned > 0 || keys > 0 || heads > 0 {
		w.log.Info("swept", "expired", expired, "outcomes_pruned", pruned, "idempotency_keys_pruned", keys, "collapse_keys_pruned", heads)
	}
	return expired
}

// prune deletes rows older than the retention in bounded batches with f.
func (w *sweeper) prune(ctx context.Context, now time.Time, f func(context.Context, time.Time, int) (int64, error)) int64 {
	total := int64(0)
	for i := 0; i < sweepMaxBatches; i++ {
		n, err := f(ctx, now.Add(-w.retention), sweepBatch)
		if err != nil {
			w.log.Error("prune failed", "err", err)
			break
		}
		total += n
		if n < sweepBatch {
			break
		}
	}
	return total
}

// pruneCollapseKeys continues the walk over message_collapse_keys for at
// most sweepMaxBatches slices, stopping at the end of the table.
func (w *sweeper) pruneCollapseKeys(ctx context.Context) int64 {
	total := int64(0)
	for i := 0; i < sweepMaxBatches; i++ {
		n, end, err := w.db.pruneCollapseKeys(ctx, &w.collapse, sweepBatch)
		if err != nil {
			w.log.Error("prune failed", "err", err)
			break
		}
		total += n
		if end {
			break
		}
	}
	return total
}

package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// txSweeper deletes decided half-records once they are older than the
// retention (the idempotency key and GET /v1/tx answer until then) and
// refreshes the per-state gauge. Prepared records are never deleted here:
// only a decision (API, check-back or expiry) ends them.
type txSweeper struct {
	db        *txDB
	metrics   *txMetrics
	log       *slog.Logger
	interval  time.Duration
	retention time.Duration
}

func (w *txSweeper) run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.sweep(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *txSweeper) sweep(ctx context.Context, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	for i := 0; i < sweepMaxBatches; i++ {
		n, err := w.db.pruneDecided(ctx, now.Add(-w.retention), sweepBatch)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("tx sweep failed; retrying next tick", "err", err)
			}
			return
		}
		w.metrics.pruned.Add(float64(n))
		if n < sweepBatch {
			break
		}
	}
	counts, err := w.db.countByState(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("tx count failed", "err", err)
		}
		return
	}
	for _, s := range []internalpb.TxState{internalpb.TxState_TX_STATE_PREPARED, internalpb.TxState_TX_STATE_COMMITTED,
		internalpb.TxState_TX_STATE_ROLLED_BACK, internalpb.TxState_TX_STATE_EXPIRED} {
		w.metrics.records.WithLabelValues(txStateName(s)).Set(float64(counts[uint8(s)]))
	}
}

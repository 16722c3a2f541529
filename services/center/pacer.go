package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Pacer spreads a large send (a multicast's messages, a broadcast's
// connections) over time, so that an app's deliveries across every center
// stay at or under its deliveries_per_second: a cluster that can reach a
// million users in seconds must not make a million clients answer the
// business's servers in the same seconds. One GCRA bucket per app in the
// shared Redis ("rate:pace:<app>") holds the cluster-wide pace; senders
// take permits in steps before each chunk they send.
//
// Usage, for any fan-out:
//
//	for each chunk of n deliveries {
//		if err := pacer.Wait(ctx, app, perSecond, n); err != nil { stop: ctx ended }
//		send the chunk
//	}
//
// A burst of a quarter second (at most pacerMaxBurst) lets the first
// chunk go at once without letting a sender run ahead of the pace.
//
// Without Redis the pacer falls back to pacing this process alone at the
// full rate (sleeping n/rate): the send still goes out, and goes out
// paced, but N centers sending at once may reach N times the rate. It is
// counted in pushgw_center_pacer_errors_total and logged at most every
// rateLimitLogEvery.
type Pacer struct {
	lim     *redis_rate.Limiter
	m       *metrics
	log     *slog.Logger
	lastLog atomic.Int64
}

const (
	// pacerMaxBurst caps the permits one step may take.
	pacerMaxBurst = 500
	// pacerCallTimeout bounds one Redis call of the pacer.
	pacerCallTimeout = 200 * time.Millisecond
	// pacerMaxSleep bounds one wait between steps, so a bucket whose rate
	// was just lowered is looked at again soon.
	pacerMaxSleep = time.Second
)

// NewPacer returns a pacer keeping its buckets in rdb.
func NewPacer(rdb redis.UniversalClient, m *metrics, log *slog.Logger) *Pacer {
	return &Pacer{lim: redis_rate.NewLimiter(rdb), m: m, log: log}
}

func pacerBurst(perSecond int) int {
	return min(max(perSecond/4, 1), pacerMaxBurst)
}

// Wait blocks until n deliveries of app may go at perSecond across the
// cluster, or ctx ends (its error is returned). perSecond <= 0 means
// unpaced, and so does a nil Pacer (a center without Redis): it returns
// at once.
func (p *Pacer) Wait(ctx context.Context, app string, perSecond, n int) error {
	if p == nil || perSecond <= 0 || n <= 0 {
		return nil
	}
	limit := redis_rate.Limit{Rate: perSecond, Burst: pacerBurst(perSecond), Period: time.Second}
	for n > 0 {
		cctx, cancel := context.WithTimeout(ctx, pacerCallTimeout)
		res, err := p.lim.AllowAtMost(cctx, "pace:"+app, limit, n)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.failed(app, err)
			return sleepCtx(ctx, time.Duration(float64(n)/float64(perSecond)*float64(time.Second)))
		}
		n -= res.Allowed
		if n <= 0 {
			return nil
		}
		wait := res.RetryAfter
		if wait <= 0 {
			// Some were granted; the rest are due one interval later.
			wait = time.Duration(float64(time.Second) / float64(perSecond))
		}
		if err := sleepCtx(ctx, min(wait, pacerMaxSleep)); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pacer) failed(app string, err error) {
	p.m.pacerErrors.Inc()
	if now := time.Now().UnixNano(); now-p.lastLog.Load() > int64(rateLimitLogEvery) {
		p.lastLog.Store(now)
		p.log.Warn("center: pacer cannot reach Redis; pacing this center alone", "app", app, "err", err)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pacer: %w", ctx.Err())
	}
}

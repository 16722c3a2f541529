package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/pkg/appconfig"
)

// Per-app rate limits across all centers: one GCRA bucket per app and API
// in the shared Redis (redis_rate; keys "rate:<api>:<app>"), so N centers
// together admit what the app's config says, ± one burst while a change
// of the config reaches them.
//
// When Redis cannot answer, the check fails OPEN: the request goes on
// unlimited, counted in pushgw_center_ratelimit_errors_total and logged at
// most once per rateLimitLogEvery. The limits protect the cluster and the
// business from floods; failing closed would turn a Redis outage into a
// total push outage, while the downstream bounds (saver's store queue,
// center's delivery queue, request deadlines) still shed real overload.
const (
	// rateLimitTimeout bounds one check, so a hung Redis adds at most
	// this to a request before it fails open.
	rateLimitTimeout  = 100 * time.Millisecond
	rateLimitLogEvery = 10 * time.Second
)

// The APIs limited separately; each is a label and a key part.
const (
	apiPush      = "push"
	apiMulti     = "multi"
	apiBroadcast = "broadcast"
)

type rateLimiter struct {
	lim *redis_rate.Limiter
	// batch takes the cost-1 checks of unicast pushes (ratelimit_batch.go).
	batch   *rateBatcher
	m       *metrics
	log     *slog.Logger
	lastLog atomic.Int64 // unix ns of the last fail-open log line
}

func newRateLimiter(rdb redis.UniversalClient, m *metrics, log *slog.Logger) *rateLimiter {
	return &rateLimiter{lim: redis_rate.NewLimiter(rdb), batch: newRateBatcher(rdb, m), m: m, log: log}
}

// allow takes cost events of api from app's bucket in a Redis call of its
// own. It answers RATE_LIMITED (429 with Retry-After) when the bucket is
// empty.
func (l *rateLimiter) allow(ctx context.Context, app, api string, r appconfig.Rate, cost int) *apiError {
	if l == nil || r.Rate <= 0 || cost <= 0 {
		return nil
	}
	if cost > r.Burst {
		// GCRA can never admit more than a burst at once: say so instead
		// of answering a 429 no wait would cure.
		return &apiError{Code: CodeInvalidArgument, Field: "users",
			Message: fmt.Sprintf("%d recipients exceed the app's %s burst of %d per request; split the request or raise the burst (pushctl app set --%s-burst)", cost, api, r.Burst, api)}
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, rateLimitTimeout)
	res, err := l.lim.AllowN(cctx, api+":"+app, redis_rate.Limit{Rate: r.Rate, Burst: r.Burst, Period: time.Second}, cost)
	cancel()
	l.m.rateLimitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		l.failOpen(app, api, err)
		return nil
	}
	if res.Allowed >= cost {
		return nil
	}
	return l.limited(app, api, r, res.RetryAfter)
}

// allowOne is allow for one event, batched with the concurrent checks of
// the same bucket (ratelimit_batch.go): the unicast pushes. The answers
// are allow's; a request that ends while its check waits for a call gets
// UNAVAILABLE (nothing was accepted), and no event when its call had not
// left.
func (l *rateLimiter) allowOne(ctx context.Context, app, api string, r appconfig.Rate) *apiError {
	if l == nil || r.Rate <= 0 {
		return nil
	}
	if r.Burst < 1 {
		return l.allow(ctx, app, api, r, 1) // its error, not a batch
	}
	out, err := l.batch.check(ctx, app, api, r)
	switch {
	case errors.Is(err, errRateBatchFull):
		l.m.rateLimitOverflow.Inc()
		return l.allow(ctx, app, api, r, 1)
	case err != nil:
		return errorf(CodeUnavailable, fmt.Sprintf("the request ended (%v) while its %s rate limit check waited; nothing was accepted", err, api))
	case out.err != nil:
		l.failOpen(app, api, out.err)
		return nil
	case out.allowed:
		return nil
	}
	return l.limited(app, api, r, out.retryAfter)
}

// failOpen counts and (at most once per rateLimitLogEvery) logs a check
// Redis did not answer; its request goes on unlimited.
func (l *rateLimiter) failOpen(app, api string, err error) {
	l.m.rateLimitErrors.WithLabelValues(api).Inc()
	if now := time.Now().UnixNano(); now-l.lastLog.Load() > int64(rateLimitLogEvery) {
		l.lastLog.Store(now)
		l.log.Warn("center: rate limit check failed; admitting unlimited (fail-open)", "app", app, "api", api, "err", err)
	}
}

// limited is the RATE_LIMITED answer; wait < 0 (unknown) becomes 1 s.
func (l *rateLimiter) limited(app, api string, r appconfig.Rate, wait time.Duration) *apiError {
	l.m.rateLimited.WithLabelValues(api).Inc()
	if wait < 0 {
		wait = time.Second
	}
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	return &apiError{Code: CodeRateLimited, retryAfter: secs,
		Message: fmt.Sprintf("app %s is over its %s limit of %d per second (burst %d); retry after %d s", app, api, r.Rate, r.Burst, secs)}
}

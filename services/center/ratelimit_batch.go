package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/pkg/appconfig"
)

// The cost-1 checks of unicast pushes (HTTP /v1/push, gRPC Push and
// PushStream) of one app are batched: concurrent checks of the same bucket
// take their events in ONE Redis call, which admits the first of them in
// arrival order, as many as the bucket holds, and refuses the rest.
//
// Policy, like the store batcher's (storebatch.go), without a fixed delay:
//   - a check that finds no call in flight for its bucket leaves at once,
//     alone, in its own goroutine: no added latency at low load;
//   - while a call is in flight, later checks queue; when it returns, the
//     queue (up to rateBatchMax, in arrival order) leaves in the next call;
//   - at most rateBatchQueue checks wait per bucket and at most
//     rateBatchKeys buckets are busy at once. A check beyond either bound
//     takes a Redis call of its own (the unbatched path, exactly as before
//     batching), counted in pushgw_center_ratelimit_batch_overflow_total:
//     never refused or admitted unchecked for want of a queue slot.
//
// Admission is what the same checks made one after the other would get:
// the script admits floor(free events) of n, so no fraction of an event is
// lost to a partly admitted batch. (redis_rate's AllowAtMost admits the
// truncated fraction but advances the bucket by all of it, e.g. 6 of a
// full burst of 7 at 3/s, so it is not used.)
//
// A Redis error or timeout (rateLimitTimeout per call) fails open every
// check of the call, as the single check does. A waiting check whose
// request ends returns at once; if its call had not left, it is removed
// from the queue and takes no event.
const (
	// rateBatchMax bounds the events one call takes: a burst of pushes
	// gets its answer in one round trip, and the Lua script stays short.
	rateBatchMax = 256
	// rateBatchQueue bounds the checks waiting per bucket: four calls'
	// worth, more than a 100 ms Redis stall gathers at 10k pushes/s.
	rateBatchQueue = 1024
	// rateBatchKeys bounds the buckets with a call in flight (one entry
	// each while busy, none when idle), so many apps cannot grow the
	// table without bound.
	rateBatchKeys = 4096
	// rateKeyPrefix is redis_rate's, so both paths share one bucket.
	rateKeyPrefix = "rate:"
)

// errRateBatchFull: the bucket's queue or the key table is full; the
// check takes the single path.
var errRateBatchFull = errors.New("center: rate limit batch full")

// allowUpToScript takes up to n events of one GCRA bucket, in redis_rate's
// layout (key "rate:<api>:<app>", value the theoretical arrival time in
// seconds since 2017-01-01), so it shares buckets with AllowN: the k-th
// event is admitted while tat + k*interval <= now + burst*interval, the
// test n AllowN(1) calls at this instant would make. The millionth of an
// event absorbs the float rounding of a full bucket (without it a full
// burst of 7 at 3/s admits 6). Returns {allowed, retry_after seconds as a
// string, -1 when all n were admitted}.
const allowUpToScript = `
redis.replicate_commands()
local key = KEYS[1]
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local interval = period / rate
local burst_offset = interval * burst
local now = redis.call("TIME")
now = (now[1] - 1483228800) + (now[2] / 1000000)
local tat = redis.call("GET", key)
if tat then
  tat = math.max(tonumber(tat), now)
else
  tat = now
end
local free = math.floor((now - tat + burst_offset) / interval + 0.000001)
local allowed = math.max(0, math.min(n, free))
local new_tat = tat + interval * allowed
if allowed > 0 then
  redis.call("SET", key, new_tat, "EX", math.ceil(new_tat - now))
end
local retry_after = -1
if allowed < n then
  retry_after = new_tat + interval - burst_offset - now
end
return {allowed, tostring(retry_after)}
`

// rateKey names one bucket.
type rateKey struct{ api, app string }

// rateOutcome is what one call answered for one check.
type rateOutcome struct {
	allowed bool
	// retryAfter: when a refused check may succeed (< 0: unknown).
	retryAfter time.Duration
	// err: the call failed; the check fails open.
	err error
}

type rateCheck struct {
	r    appconfig.Rate
	done chan rateOutcome // buffered: a call never blocks on a gone caller
	// taken is set, under rateBatcher.mu, when the check's call leaves.
	taken bool
}

// rateQueue is a busy bucket: a call in flight, checks waiting for the next.
type rateQueue struct {
	waiting []*rateCheck // arrival order
}

// rateCall takes up to n events of k's bucket in one Redis call.
type rateCall func(k rateKey, r appconfig.Rate, n int) (allowed int, retryAfter time.Duration, err error)

type rateBatcher struct {
	rdb    redis.Scripter
	script *redis.Script
	m      *metrics
	// call is redisCall; tests wrap it to hold a call in flight.
	call rateCall
	// Bounds, the constants above; tests lower them.
	maxBatch, maxWaiting, maxKeys int

	mu   sync.Mutex
	keys map[rateKey]*rateQueue
}

func newRateBatcher(rdb redis.Scripter, m *metrics) *rateBatcher {
	b := &rateBatcher{
		rdb: rdb, script: redis.NewScript(allowUpToScript), m: m,
		maxBatch: rateBatchMax, maxWaiting: rateBatchQueue, maxKeys: rateBatchKeys,
		keys: make(map[rateKey]*rateQueue),
	}
	b.call = b.redisCall
	return b
}

// check takes one event of api from app's bucket with the concurrent
// checks of that bucket. The error is errRateBatchFull (take the single
// path) or ctx's, when the request ended while the check waited.
func (b *rateBatcher) check(ctx context.Context, app, api string, r appconfig.Rate) (rateOutcome, error) {
	k := rateKey{api: api, app: app}
	b.mu.Lock()
	q := b.keys[k]
	if q == nil {
		if len(b.keys) >= b.maxKeys {
			b.mu.Unlock()
			return rateOutcome{}, errRateBatchFull
		}
		q = &rateQueue{}
		b.keys[k] = q
		b.mu.Unlock()
		// No call in flight: leave now, alone, on this goroutine.
		allowed, wait, err := b.call(k, r, 1)
		b.next(k, q)
		return rateOutcome{allowed: allowed >= 1, retryAfter: wait, err: err}, nil
	}
	if len(q.waiting) >= b.maxWaiting {
		b.mu.Unlock()
		return rateOutcome{}, errRateBatchFull
	}
	c := &rateCheck{r: r, done: make(chan rateOutcome, 1)}
	q.waiting = append(q.waiting, c)
	b.mu.Unlock()
	select {
	case out := <-c.done:
		return out, nil
	case <-ctx.Done():
		b.mu.Lock()
		if !c.taken {
			// Its call has not left: out of the queue, no event taken.
			// q is still the key's: it holds c, so next kept it.
			for i, w := range q.waiting {
				if w == c {
					last := copy(q.waiting[i:], q.waiting[i+1:]) + i
					q.waiting[last] = nil
					q.waiting = q.waiting[:last]
					break
				}
			}
		}
		b.mu.Unlock()
		return rateOutcome{}, ctx.Err()
	}
}

// next sends k's waiting checks in the next call, or retires the key when
// none wait. One batch holds checks of one limit: after a config change
// the older ones go first, on their own.
func (b *rateBatcher) next(k rateKey, q *rateQueue) {
	b.mu.Lock()
	if len(q.waiting) == 0 {
		delete(b.keys, k)
		b.mu.Unlock()
		return
	}
	r := q.waiting[0].r
	n := 0
	for n < len(q.waiting) && n < b.maxBatch && q.waiting[n].r == r {
		q.waiting[n].taken = true
		n++
	}
	batch := make([]*rateCheck, n)
	copy(batch, q.waiting)
	rest := copy(q.waiting, q.waiting[n:])
	clear(q.waiting[rest:])
	q.waiting = q.waiting[:rest]
	b.mu.Unlock()
	go b.flush(k, q, r, batch)
}

// flush makes batch's call and answers its checks: the first allowed ones
// admitted, in arrival order, the rest refused.
func (b *rateBatcher) flush(k rateKey, q *rateQueue, r appconfig.Rate, batch []*rateCheck) {
	allowed, wait, err := b.call(k, r, len(batch))
	b.next(k, q)
	for i, c := range batch {
		c.done <- rateOutcome{allowed: i < allowed, retryAfter: wait, err: err}
	}
}

// redisCall runs allowUpToScript for n events, with its own deadline (not
// a caller's: the call serves many) and the call's metrics.
func (b *rateBatcher) redisCall(k rateKey, r appconfig.Rate, n int) (int, time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), rateLimitTimeout)
	v, err := b.script.Run(ctx, b.rdb, []string{rateKeyPrefix + k.api + ":" + k.app}, r.Burst, r.Rate, 1, n).Slice()
	cancel()
	b.m.rateLimitSeconds.Observe(time.Since(start).Seconds())
	b.m.rateLimitBatch.Observe(float64(n))
	if err != nil {
		return 0, 0, fmt.Errorf("center: ratelimit %s %s: %w", k.api, k.app, err)
	}
	allowed, wait, err := parseAllowUpTo(v)
	if err != nil {
		return 0, 0, fmt.Errorf("center: ratelimit %s %s: %w", k.api, k.app, err)
	}
	return min(allowed, n), wait, nil
}

func parseAllowUpTo(v []any) (int, time.Duration, error) {
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("script answered %d values, want 2", len(v))
	}
	allowed, ok := v[0].(int64)
	s, ok2 := v[1].(string)
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("script answered %T %T, want integer and string", v[0], v[1])
	}
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("script's retry_after %q: %w", s, err)
	}
	if secs < 0 {
		return int(allowed), -1, nil
	}
	return int(allowed), time.Duration(secs * float64(time.Second)), nil
}

// The batcher's metrics, registered with the other rate limit metrics
// (metrics.go).
func newRateBatchHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pushgw_center_ratelimit_batch_checks",
		Help:    "Unicast push rate limit checks per batched Redis call (1 when the call found no other check waiting).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	})
}

func newRateBatchOverflow() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_center_ratelimit_batch_overflow_total",
		Help: "Unicast push rate limit checks that found their app's batch queue (1,024) or the batcher's table of busy apps (4,096) full and took a Redis call of their own.",
	})
}

package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/pkg/appconfig"
)

// waiting is how many checks of app's push bucket wait for a call.
func (b *rateBatcher) waiting(app string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.keys[rateKey{api: apiPush, app: app}]; q != nil {
		return len(q.waiting)
	}
	return 0
}

// heldCalls wraps l's batched Redis call: the first call waits for
// release, and every call's size is recorded, in order.
type heldCalls struct {
	entered chan int // the first call's size, once it is in flight
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
}

func holdFirstCall(l *rateLimiter) *heldCalls {
	h := &heldCalls{entered: make(chan int, 1), release: make(chan struct{})}
	call := l.batch.call
	l.batch.call = func(k rateKey, r appconfig.Rate, n int) (int, time.Duration, error) {
		h.mu.Lock()
		h.sizes = append(h.sizes, n)
		first := len(h.sizes) == 1
		h.mu.Unlock()
		if first {
			h.entered <- n
			<-h.release
		}
		return call(k, r, n)
	}
	return h
}

func (h *heldCalls) calls() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.sizes...)
}

// histStats is h's sample count and sum.
func histStats(t testing.TB, h prometheus.Histogram) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// accrued bounds the events a bucket of rate r refilled since start: the
// counts below are exact unless the run took longer than 1/r.
func accrued(start time.Time, r appconfig.Rate) int {
	return int(time.Since(start).Seconds() * float64(r.Rate))
}

// (a) At the margin: B+k concurrent checks, released together, admit
// exactly B whatever the batching; the k others get RATE_LIMITED.
func TestRateBatchAdmitsExactlyTheBurst(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	l := newRateLimiter(testRedis(t), m, quietLog())
	r := appconfig.Rate{Rate: 1, Burst: 20}
	const extra = 30
	go1 := make(chan struct{})
	errs := make(chan *apiError, r.Burst+extra)
	var wg sync.WaitGroup
	for range r.Burst + extra {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-go1
			errs <- l.allowOne(context.Background(), "a", apiPush, r)
		}()
	}
	start := time.Now()
	close(go1)
	wg.Wait()
	close(errs)
	admitted, refused := 0, 0
	for e := range errs {
		switch {
		case e == nil:
			admitted++
		case e.Code == CodeRateLimited && e.retryAfter >= 1:
			refused++
		default:
			t.Fatalf("check answered %+v, want admitted or RATE_LIMITED with retryAfter >= 1", e)
		}
	}
	if admitted < r.Burst || admitted > r.Burst+accrued(start, r) || admitted+refused != r.Burst+extra {
		t.Fatalf("admitted %d, refused %d of %d checks with burst %d", admitted, refused, r.Burst+extra, r.Burst)
	}
	calls, checks := histStats(t, m.rateLimitBatch)
	t.Logf("%d checks in %d Redis calls", int(checks), calls)
	if n := value(t, m.rateLimited.WithLabelValues(apiPush)); int(n) != refused {
		t.Fatalf("rate limited counter %v, want %d", n, refused)
	}
}

// A full bucket whose interval is no exact float (3/s) gives one call its
// whole burst; redis_rate's AllowAtMost gives 6 of 7 here. One call is one
// instant in Redis, so the count is exact.
func TestRateBatchScriptTakesWholeEvents(t *testing.T) {
	l := newRateLimiter(testRedis(t), newMetrics(prometheus.NewRegistry()), quietLog())
	for _, r := range []appconfig.Rate{{Rate: 3, Burst: 7}, {Rate: 7, Burst: 10}, {Rate: 1_000_003, Burst: 999}} {
		k := rateKey{api: apiPush, app: "fresh"}
		k.app += time.Now().Format("150405.000000000")
		allowed, wait, err := l.batch.redisCall(k, r, r.Burst+5)
		if err != nil {
			t.Fatal(err)
		}
		if allowed != r.Burst || wait <= 0 {
			t.Fatalf("%+v: a full bucket's call of %d admitted %d (retry after %v), want %d and a wait", r, r.Burst+5, allowed, wait, r.Burst)
		}
	}
}

// (b) While a call is in flight the checks that come wait, then go
// together: one call for all of them (at most maxBatch each), admitting
// the first in arrival order.
func TestRateBatchCoalescesWaitingChecks(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	l := newRateLimiter(testRedis(t), m, quietLog())
	l.batch.maxBatch = 4
	h := holdFirstCall(l)
	r := appconfig.Rate{Rate: 1, Burst: 6}
	errs := make([]*apiError, 11)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); errs[0] = l.allowOne(context.Background(), "a", apiPush, r) }()
	if n := <-h.entered; n != 1 {
		t.Fatalf("the first check's call carried %d checks, want 1", n)
	}
	// One by one, so the arrival order is the index.
	for i := 1; i < len(errs); i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = l.allowOne(context.Background(), "a", apiPush, r) }()
		waitFor(t, "the check to queue", func() bool { return l.batch.waiting("a") == i })
	}
	start := time.Now()
	close(h.release)
	wg.Wait()
	if got := h.calls(); len(got) != 4 || got[0] != 1 || got[1] != 4 || got[2] != 4 || got[3] != 2 {
		t.Fatalf("calls carried %v checks, want [1 4 4 2]", got)
	}
	if calls, checks := histStats(t, m.rateLimitBatch); calls != 4 || checks != 11 {
		t.Fatalf("batch histogram: %d calls, %v checks; want 4 and 11", calls, checks)
	}
	if calls, _ := histStats(t, m.rateLimitSeconds); calls != 4 {
		t.Fatalf("check time observed %d times, want once per call (4)", calls)
	}
	if accrued(start, r) == 0 {
		for i, e := range errs {
			if want := i < r.Burst; (e == nil) != want || (e != nil && e.Code != CodeRateLimited) {
				t.Fatalf("check %d (arrival order): %+v, admitted want %v", i, e, want)
			}
		}
	}
	if l.batch.waiting("a") != 0 || len(l.batch.keys) != 0 {
		t.Fatalf("idle bucket still in the table: %v", l.batch.keys)
	}
}

// Beyond the bounds a check takes a call of its own, not refused and not
// unchecked: a full queue of its bucket or a full table of buckets.
func TestRateBatchOverflowTakesSinglePath(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	l := newRateLimiter(testRedis(t), m, quietLog())
	l.batch.maxWaiting, l.batch.maxKeys = 2, 1
	h := holdFirstCall(l)
	r := appconfig.Rate{Rate: 1, Burst: 10}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e := l.allowOne(context.Background(), "a", apiPush, r); e != nil {
				t.Error(e)
			}
		}()
	}
	<-h.entered
	waitFor(t, "two checks to queue", func() bool { return l.batch.waiting("a") == 2 })
	// The held call blocks the batch, not the single path.
	if e := l.allowOne(context.Background(), "a", apiPush, r); e != nil {
		t.Fatalf("check past a full queue: %v", e)
	}
	if e := l.allowOne(context.Background(), "b", apiPush, r); e != nil {
		t.Fatalf("check past a full table: %v", e)
	}
	if n := value(t, m.rateLimitOverflow); n != 2 {
		t.Fatalf("overflow counter %v, want 2", n)
	}
	close(h.release)
	wg.Wait()
	if got := h.calls(); len(got) != 2 || got[1] != 2 {
		t.Fatalf("batched calls carried %v checks, want [1 2]", got)
	}
}

// (c) Redis unreachable: every check of a batch fails open, each counted.
func TestRateBatchFailsOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a closed port: connections are refused
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	m := newMetrics(prometheus.NewRegistry())
	l := newRateLimiter(rdb, m, quietLog())
	h := holdFirstCall(l)
	r := appconfig.Rate{Rate: 1, Burst: 1}
	const checks = 6
	var wg sync.WaitGroup
	for range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e := l.allowOne(context.Background(), "a", apiPush, r); e != nil {
				t.Errorf("Redis down: %v, want admitted", e)
			}
		}()
	}
	<-h.entered
	waitFor(t, "the other checks to queue", func() bool { return l.batch.waiting("a") == checks-1 })
	close(h.release)
	wg.Wait()
	if got := h.calls(); len(got) != 2 || got[1] != checks-1 {
		t.Fatalf("calls carried %v checks, want [1 %d]", got, checks-1)
	}
	if n := value(t, m.rateLimitErrors.WithLabelValues(apiPush)); n != checks {
		t.Fatalf("ratelimit errors %v, want %d (one per check)", n, checks)
	}
}

// (d) A check whose request ends while it waits returns ctx's error at
// once, and takes no event: the bucket still holds all but the first
// check's.
func TestRateBatchCancelledWaiterTakesNoEvent(t *testing.T) {
	l := newRateLimiter(testRedis(t), newMetrics(prometheus.NewRegistry()), quietLog())
	h := holdFirstCall(l)
	r := appconfig.Rate{Rate: 1, Burst: 5}
	first := make(chan *apiError, 1)
	go func() { first <- l.allowOne(context.Background(), "a", apiPush, r) }()
	<-h.entered
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		out rateOutcome
		err error
	}
	waiter := make(chan result, 1)
	go func() {
		out, err := l.batch.check(ctx, "a", apiPush, r)
		waiter <- result{out, err}
	}()
	waitFor(t, "the check to queue", func() bool { return l.batch.waiting("a") == 1 })
	cancel()
	// Returns while the call it waited for is still held.
	if res := <-waiter; !errors.Is(res.err, context.Canceled) {
		t.Fatalf("cancelled waiter: %+v %v, want context.Canceled", res.out, res.err)
	}
	if n := l.batch.waiting("a"); n != 0 {
		t.Fatalf("%d checks still queued after the cancel", n)
	}
	// The same through allowOne: UNAVAILABLE, nothing accepted.
	ctx2, cancel2 := context.WithCancel(context.Background())
	e2 := make(chan *apiError, 1)
	go func() { e2 <- l.allowOne(ctx2, "a", apiPush, r) }()
	waitFor(t, "the check to queue", func() bool { return l.batch.waiting("a") == 1 })
	cancel2()
	if e := <-e2; e == nil || e.Code != CodeUnavailable {
		t.Fatalf("cancelled check: %+v, want UNAVAILABLE", e)
	}
	start := time.Now()
	close(h.release)
	if e := <-first; e != nil {
		t.Fatalf("first check: %v", e)
	}
	if got := h.calls(); len(got) != 1 {
		t.Fatalf("calls %v: the cancelled checks went to Redis", got)
	}
	for i := 1; i < r.Burst; i++ {
		if e := l.allowOne(context.Background(), "a", apiPush, r); e != nil {
			t.Fatalf("check %d of the burst after the cancelled ones: %v", i+1, e)
		}
	}
	if e := l.allowOne(context.Background(), "a", apiPush, r); accrued(start, r) == 0 && (e == nil || e.Code != CodeRateLimited) {
		t.Fatalf("check past the burst: %+v, want RATE_LIMITED", e)
	}
}

// A limit change splits the queue: one call carries checks of one limit,
// the older ones first, in arrival order.
func TestRateBatchSplitsOnLimitChange(t *testing.T) {
	l := newRateLimiter(testRedis(t), newMetrics(prometheus.NewRegistry()), quietLog())
	h := holdFirstCall(l)
	old, changed := appconfig.Rate{Rate: 100, Burst: 100}, appconfig.Rate{Rate: 200, Burst: 200}
	var wg sync.WaitGroup
	check := func(r appconfig.Rate) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e := l.allowOne(context.Background(), "a", apiPush, r); e != nil {
				t.Error(e)
			}
		}()
	}
	check(old)
	<-h.entered
	for i, r := range []appconfig.Rate{old, old, changed, changed, old} {
		check(r)
		waitFor(t, "the check to queue", func() bool { return l.batch.waiting("a") == i+1 })
	}
	close(h.release)
	wg.Wait()
	if got := h.calls(); len(got) != 4 || got[1] != 2 || got[2] != 2 || got[3] != 1 {
		t.Fatalf("calls carried %v checks, want [1 2 2 1]", got)
	}
}

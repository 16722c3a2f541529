package main

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/pkg/appconfig"
)

func testRedis(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(t).Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRateLimiterAdmitsBurstThenLimits(t *testing.T) {
	l := newRateLimiter(testRedis(t), newMetrics(prometheus.NewRegistry()), quietLog())
	ctx := context.Background()
	r := appconfig.Rate{Rate: 5, Burst: 3}
	for i := 0; i < 3; i++ {
		if e := l.allow(ctx, "a", apiPush, r, 1); e != nil {
			t.Fatalf("request %d of the burst: %v", i, e)
		}
	}
	e := l.allow(ctx, "a", apiPush, r, 1)
	if e == nil || e.Code != CodeRateLimited || e.retryAfter < 1 {
		t.Fatalf("past the burst: %+v, want RATE_LIMITED with retryAfter >= 1", e)
	}
	if e := l.allow(ctx, "b", apiPush, r, 1); e != nil {
		t.Fatalf("another app shares the bucket: %v", e)
	}
	if e := l.allow(ctx, "a", apiMulti, appconfig.Rate{Rate: 100, Burst: 100}, 101); e == nil || e.Code != CodeInvalidArgument {
		t.Fatalf("a request larger than the burst: %+v, want INVALID_ARGUMENT", e)
	}
	if e := l.allow(ctx, "a", apiPush, appconfig.Rate{}, 1); e != nil {
		t.Fatalf("unlimited app limited: %v", e)
	}
}

// Redis down: requests pass (fail-open) and the failure is counted.
func TestRateLimiterFailsOpen(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer rdb.Close()
	m := newMetrics(prometheus.NewRegistry())
	l := newRateLimiter(rdb, m, quietLog())
	srv.Kill()
	start := time.Now()
	if e := l.allow(context.Background(), "a", apiPush, appconfig.Rate{Rate: 1, Burst: 1}, 1); e != nil {
		t.Fatalf("Redis down: %v, want admitted", e)
	}
	if d := time.Since(start); d > rateLimitTimeout+200*time.Millisecond {
		t.Fatalf("check with Redis down took %v", d)
	}
	if n := value(t, m.rateLimitErrors.WithLabelValues(apiPush)); n != 1 {
		t.Fatalf("ratelimit errors %v, want 1", n)
	}
}

// The pacer holds a sender to the rate: 1,000 permits at 2,000/s with a
// first step of 500 take about 250 ms, never much less.
func TestPacerPaces(t *testing.T) {
	p := NewPacer(testRedis(t), newMetrics(prometheus.NewRegistry()), quietLog())
	ctx := context.Background()
	start := time.Now()
	for range 10 {
		if err := p.Wait(ctx, "a", 2000, 100); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Fatalf("1,000 permits at 2,000/s took %v, want about 250 ms", d)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := p.Wait(cctx, "a", 10, 1000); err == nil {
		t.Fatal("Wait outlived its context")
	}
}

// BenchmarkRateLimitCheck measures one check against a real redis-server
// and reports its p99 (target: <= 1 ms added to a request).
func BenchmarkRateLimitCheck(b *testing.B) {
	l := newRateLimiter(testRedis(b), newMetrics(prometheus.NewRegistry()), quietLog())
	ctx := context.Background()
	r := appconfig.Rate{Rate: appconfig.MaxLimit, Burst: appconfig.MaxLimit}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if e := l.allow(ctx, "bench", apiPush, r, 1); e != nil {
			b.Fatal(e)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}

// BenchmarkRedisPingBaseline is one PING on the same kind of server: the
// floor a rate limit check cannot beat, measured in the same run so a
// loaded box shows in both.
func BenchmarkRedisPingBaseline(b *testing.B) {
	rdb := testRedis(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := rdb.Ping(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}

// Without Redis the pacer still paces, this center alone: 500 permits at
// 1,000/s take about half a second, and the failure is counted.
func TestPacerWithoutRedisPacesLocally(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer rdb.Close()
	m := newMetrics(prometheus.NewRegistry())
	p := NewPacer(rdb, m, quietLog())
	srv.Kill()
	start := time.Now()
	if err := p.Wait(context.Background(), "a", 1000, 500); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 5*time.Second {
		t.Fatalf("500 permits at 1,000/s without Redis took %v, want about 500 ms", d)
	}
	if n := value(t, m.pacerErrors); n != 1 {
		t.Fatalf("pacer errors %v, want 1", n)
	}
}

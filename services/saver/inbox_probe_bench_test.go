package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushgw/pushgw/internal/redistest"
)

// BenchmarkInboxProbe measures the Redis side of a batch of logins
// (PendingBatch's probe of every user's inbox) against a private Redis:
// returning users whose empty inbox is marked (answered from Redis) and
// new users (unmarked: the probe takes their lease). redis-µs/user is the
// CPU Redis reports per user probed.
// go test -run '^$' -bench BenchmarkInboxProbe -benchtime 2000x ./services/saver/
func BenchmarkInboxProbe(b *testing.B) {
	for _, kind := range []string{"returning", "new"} {
		b.Run("users="+kind, func(b *testing.B) { benchInboxProbe(b, kind == "new") })
	}
}

func benchInboxProbe(b *testing.B, fresh bool) {
	const per = 100 // logins in one room flush window
	ctx := context.Background()
	rdb, err := newRedis(ctx, redistest.Start(b).Addr(), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	in, now := &inbox{rdb: rdb}, time.Now()
	batch := func(i int) []probe {
		ps := make([]probe, per)
		for k := range ps {
			u := fmt.Sprint("u", k)
			if fresh {
				u = fmt.Sprint("u", i, "-", k)
			}
			ps[k] = probe{u: userRef{"app1", u}}
		}
		return ps
	}
	if !fresh {
		ps := batch(0)
		if err := in.probeAll(ctx, ps, now); err != nil {
			b.Fatal(err)
		}
		if n, err := in.markEmpty(ctx, ps, now); err != nil || n != per {
			b.Fatalf("marked %d of %d: %v", n, per, err)
		}
	}
	want := int64(probeEmpty)
	if fresh {
		want = probeUntrusted
	}
	cpu0, err := redistest.UsedCPU(ctx, rdb)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ps := batch(i)
		if err := in.probeAll(ctx, ps, now); err != nil {
			b.Fatal(err)
		}
		if ps[0].state != want {
			b.Fatalf("probe state %d, want %d", ps[0].state, want)
		}
	}
	b.StopTimer()
	cpu1, err := redistest.UsedCPU(ctx, rdb)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N*per), "redis-µs/user")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/batch")
}

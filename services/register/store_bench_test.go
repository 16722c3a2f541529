package main

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// BenchmarkLookup measures register's lookup, the call center makes for
// every batch of pushes, against a private Redis: users per call as
// center batches them, each user with one live device and one expired
// one. redis-µs/user is the CPU Redis itself reports (INFO cpu) per user
// looked up, the figure that counts on a box Redis shares.
// go test -run '^$' -bench BenchmarkLookup -benchtime 20000x ./services/register/
func BenchmarkLookup(b *testing.B) {
	for _, per := range []int{1, 50} {
		b.Run(fmt.Sprint("users_per_call=", per), func(b *testing.B) { benchLookup(b, per) })
	}
}

func benchLookup(b *testing.B, per int) {
	ctx := context.Background()
	rdb, err := newRedis(ctx, redistest.Start(b).Addr(), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	st := &store{rdb: rdb, ttl: time.Minute}
	if err := st.loadScripts(ctx); err != nil {
		b.Fatal(err)
	}
	const users = 1000
	keys := make([]*internalpb.UserKey, users)
	live := make([]*internalpb.Session, users)
	for i := range keys {
		u := "user" + strconv.Itoa(i)
		keys[i] = &internalpb.UserKey{App: "app1", User: u}
		live[i] = sess("app1", u, "phone", "room-1", uint64(i+1))
	}
	if err := st.put(ctx, live); err != nil {
		b.Fatal(err)
	}
	// An expired device beside each live one, written as Put lays it out
	// with an expiry long past (a Put would prune it): lookups must skip it.
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.HSet(ctx, userKey(k.GetApp(), k.GetUser()), "d:pad", "stale", "o:pad", "room-1\x000", "e:pad", 1)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	got, err := st.lookup(ctx, keys[:per])
	if err != nil || len(got) != per {
		b.Fatalf("lookup of %d users: %d sessions, %v", per, len(got), err)
	}
	cpu0 := redisCPU(b, rdb)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		first := (i * per) % (users - per + 1)
		if _, err := st.lookup(ctx, keys[first:first+per]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	n := float64(b.N * per)
	b.ReportMetric(n/time.Since(start).Seconds(), "users/s")
	b.ReportMetric(float64((redisCPU(b, rdb)-cpu0).Microseconds())/n, "redis-µs/user")
}

// redisCPU is the CPU time Redis reports it has used.
func redisCPU(b *testing.B, rdb redis.UniversalClient) time.Duration {
	d, err := redistest.UsedCPU(context.Background(), rdb)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/proto/internalpb"
)

func epochOf(t *testing.T, f *fixture) string {
	t.Helper()
	rep, err := f.cli.Epoch(callCtx(t), &internalpb.EpochRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetEpoch() == "" {
		t.Fatal("empty epoch")
	}
	return rep.GetEpoch()
}

// readEpoch reads the markers again, past register's cache: what the
// next poll after epochCacheFor would answer.
func readEpoch(t *testing.T, f *fixture) string {
	t.Helper()
	v, err := newEpochs(f.rdb).read(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The epoch stays while Redis keeps its data and changes when it loses it.
func TestEpochChangesWhenRedisLosesData(t *testing.T) {
	f := newFixture(t, time.Minute)
	first := epochOf(t, f)
	if again := readEpoch(t, f); again != first {
		t.Fatalf("epoch changed from %s to %s with no data loss", first, again)
	}
	if err := f.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	second := readEpoch(t, f)
	if second == first {
		t.Fatalf("epoch still %s after the data loss", first)
	}
	if again := readEpoch(t, f); again != second {
		t.Fatalf("new epoch %s not kept: read %s next", second, again)
	}
}

// On a Redis Cluster each master holds its own marker, so one master
// flushed changes the epoch.
func TestEpochOnRedisCluster(t *testing.T) {
	rc := redistest.StartCluster(t)
	f := newFixtureOn(t, time.Minute, rc.Addrs())
	first := epochOf(t, f)
	if n := strings.Count(first, ",") + 1; n != redistest.ClusterMasters {
		t.Fatalf("epoch %q has %d markers, want one per master (%d)", first, n, redistest.ClusterMasters)
	}
	cc := rc.Client()
	var one *redis.Client
	var mu sync.Mutex // the callback runs for every master at once
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		if one == nil || c.Options().Addr < one.Options().Addr {
			one = c
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := one.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	second := readEpoch(t, f)
	// Only the flushed master's marker changed.
	a, b := strings.Split(first, ","), strings.Split(second, ",")
	changed := 0
	for i := range a {
		if a[i] != b[i] {
			changed++
		}
	}
	if changed != 1 {
		t.Fatalf("epochs %s then %s: %d markers changed, want 1", first, second, changed)
	}
}

package main

import (
	"context"
	"strconv"
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

// lookupSettling is the settling flag of a lookup's answer.
func lookupSettling(t *testing.T, f *fixture) bool {
	t.Helper()
	rep, err := f.cli.Lookup(callCtx(t), &internalpb.LookupSessionsRequest{Users: []*internalpb.UserKey{{App: "a", User: "u"}}})
	if err != nil {
		t.Fatal(err)
	}
	return rep.GetSettling()
}

// waitSettling polls lookups until their settling flag is want: the
// epoch is cached for epochCacheFor, so a change shows within it.
func waitSettling(t *testing.T, f *fixture, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for lookupSettling(t, f) != want {
		if time.Now().After(deadline) {
			t.Fatalf("lookups never answered settling=%v", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Lookups answer settling just after the store lost its data (rooms are
// putting their sessions back), and not while the epoch is old.
func TestLookupSettlesAfterDataLoss(t *testing.T) {
	f := newFixture(t, time.Minute)
	old := "0123456789abcdef@" + strconv.FormatInt(time.Now().Add(-time.Hour).UnixMilli(), 10)
	if err := f.rdb.Set(context.Background(), epochKey, old, 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitSettling(t, f, false)
	if err := f.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	waitSettling(t, f, true)
	if v := readEpoch(t, f); v == old {
		t.Fatalf("epoch still %s after the data loss", v)
	}
}

func TestBornOf(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"abc@1000", 1000},
		{"n1:6379=abc@1000,n2:6379=def@3000", 3000},
		{"n1:6379=abc@1000,n2:6379=legacy", 1000},
		{"legacy", 0},
		{"abc@notanumber", 0},
		{"", 0},
	} {
		got := bornOf(c.in)
		if (c.want == 0) != got.IsZero() || (c.want != 0 && got.UnixMilli() != c.want) {
			t.Errorf("bornOf(%q) = %v, want %d ms", c.in, got, c.want)
		}
	}
}

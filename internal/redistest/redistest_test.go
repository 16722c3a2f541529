package redistest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestKillRestartLosesData proves what fault-injection tests rely on: a
// killed server refuses clients, Restart brings it back on the same address
// with no data, and a client made before the crash works again after it.
func TestKillRestartLosesData(t *testing.T) {
	s := Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Kill()
	if err := rdb.Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET succeeded while redis was killed")
	}
	s.Restart()
	if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after kill+restart = %v, want redis.Nil (data gone)", err)
	}

	if err := rdb.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatalf("SET after restart: %v", err)
	}
	s.Stop()
	s.Restart()
	if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after stop+restart = %v, want redis.Nil (nothing saved)", err)
	}
	if err := rdb.Set(ctx, "k", "v3", 0).Err(); err != nil {
		t.Fatalf("SET after second restart: %v", err)
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v3" {
		t.Fatalf("GET = %q, %v; want v3", got, err)
	}
}

// TestServersAreSeparate checks two servers in one test get their own
// ports and data, so one can be taken down while the other serves.
func TestServersAreSeparate(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("both servers on %s", a.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ra := redis.NewClient(&redis.Options{Addr: a.Addr()})
	defer ra.Close()
	rb := redis.NewClient(&redis.Options{Addr: b.Addr()})
	defer rb.Close()
	if err := ra.Set(ctx, "only-a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rb.Get(ctx, "only-a").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("b sees a's key: %v", err)
	}
	a.Kill()
	if err := rb.Ping(ctx).Err(); err != nil {
		t.Fatalf("b down after killing a: %v", err)
	}
}

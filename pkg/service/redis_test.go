package service

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/internal/redistest"
)

func TestRedisAddrs(t *testing.T) {
	for in, want := range map[string]int{"a:1": 1, "a:1,b:2,c:3": 3, " a:1 , b:2 ,": 2} {
		got, err := RedisAddrs(in)
		if err != nil || len(got) != want {
			t.Errorf("RedisAddrs(%q) = %v, %v; want %d addresses", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ",", " , "} {
		if _, err := RedisAddrs(bad); err == nil || !strings.Contains(err.Error(), "names no address") {
			t.Errorf("RedisAddrs(%q) = %v; want a clear error", bad, err)
		}
	}
}

// TestNewRedisPicksClientKind: one address is a plain client on that
// database, several a cluster client, which refuses a database other than 0.
func TestNewRedisPicksClientKind(t *testing.T) {
	ctx := context.Background()
	one, err := NewRedis(ctx, "svc", RedisConfig{Addrs: redistest.Start(t).Addr(), DB: 3, PoolSize: 2, Timeout: redisPingTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if c, ok := one.(*redis.Client); !ok || c.Options().DB != 3 {
		t.Fatalf("one address gave %T", one)
	}

	rc := redistest.StartCluster(t)
	if _, err := NewRedis(ctx, "svc", RedisConfig{Addrs: rc.Addrs(), DB: 12, Timeout: redisPingTimeout}); err == nil || !strings.Contains(err.Error(), "only database 0") {
		t.Fatalf("cluster with -redis-db 12: %v", err)
	}
	many, err := NewRedis(ctx, "svc", RedisConfig{Addrs: rc.Addrs(), PoolSize: 2, Timeout: redisPingTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer many.Close()
	if _, ok := many.(*redis.ClusterClient); !ok {
		t.Fatalf("several addresses gave %T", many)
	}

	if _, err := NewRedis(ctx, "svc", RedisConfig{Addrs: freeport.Addr(t), Timeout: redisPingTimeout}); err == nil || !strings.Contains(err.Error(), "svc: cannot start without Redis") {
		t.Fatalf("nobody listening: %v", err)
	}
}

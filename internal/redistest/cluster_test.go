package redistest

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterKillRestart proves what the cluster tests rely on: keys spread
// over all three masters, a killed master takes only its own slots away,
// and after Restart it serves them again, empty.
func TestClusterKillRestart(t *testing.T) {
	c := StartCluster(t)
	rdb := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// One key per master: find keys until every node owns one.
	owner := map[string]string{} // node addr -> key
	for i := 0; len(owner) < ClusterMasters && i < 10000; i++ {
		k := "k" + strconv.Itoa(i)
		n, err := rdb.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		addr := n.Options().Addr
		if _, ok := owner[addr]; !ok {
			owner[addr] = k
			if err := rdb.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatalf("SET %s on %s: %v", k, addr, err)
			}
		}
	}
	if len(owner) != ClusterMasters {
		t.Fatalf("keys landed on %d masters, want %d: %v", len(owner), ClusterMasters, owner)
	}

	victim := c.Nodes[0]
	victim.Kill()
	for addr, k := range owner {
		short, scancel := context.WithTimeout(ctx, 3*time.Second)
		err := rdb.Get(short, k).Err()
		scancel()
		if addr == victim.Addr() {
			if err == nil {
				t.Fatalf("GET %s succeeded while its master %s was killed", k, addr)
			}
		} else if err != nil {
			t.Fatalf("GET %s on surviving master %s: %v", k, addr, err)
		}
	}

	victim.Restart()
	c.WaitOK()
	for addr, k := range owner {
		err := rdb.Get(ctx, k).Err()
		if addr == victim.Addr() {
			if !errors.Is(err, redis.Nil) {
				t.Fatalf("GET %s after restart of %s = %v, want redis.Nil (data gone)", k, addr, err)
			}
		} else if err != nil {
			t.Fatalf("GET %s on %s after restart: %v", k, addr, err)
		}
	}
	if err := rdb.Set(ctx, owner[victim.Addr()], "v2", 0).Err(); err != nil {
		t.Fatalf("SET on restarted master: %v", err)
	}
}

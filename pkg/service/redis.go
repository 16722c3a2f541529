package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig is how a service reaches Redis: one address is one server,
// several comma-separated addresses are seed nodes of a Redis Cluster (the
// client learns the rest of the cluster from them).
type RedisConfig struct {
	Addrs    string // the -redis flag
	DB       int    // the -redis-db flag; a cluster has only database 0
	PoolSize int    // per server (per master in a cluster)
	// Timeout is the dial, read and write timeout of one call.
	Timeout time.Duration
}

const (
	// redisPingTimeout bounds the start-up reachability check.
	redisPingTimeout = 5 * time.Second
	// redisDialAttempts is how often one command dials a Redis it has no
	// connection to; redisCommandRetries how often it is retried.
	redisDialAttempts   = 1
	redisCommandRetries = 1
)

// RedisAddrs splits a -redis value into its addresses.
func RedisAddrs(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-redis %q names no address (want host:port, or host:port,host:port,… for a Redis Cluster)", s)
	}
	return out, nil
}

// NewRedis returns a client for cfg and checks that Redis answers. The
// result is a *redis.Client for one address and a *redis.ClusterClient for
// several; callers only see redis.UniversalClient, so every multi-key
// command, MULTI/EXEC and script they send must keep its keys in one hash
// slot (hash tags, see docs/OPERATIONS.md "Redis keys").
func NewRedis(ctx context.Context, svc string, cfg RedisConfig) (redis.UniversalClient, error) {
	addrs, err := RedisAddrs(cfg.Addrs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", svc, err)
	}
	if len(addrs) > 1 && cfg.DB != 0 {
		return nil, fmt.Errorf("%s: -redis-db %d with a Redis Cluster (-redis lists %d addresses): a cluster has only database 0", svc, cfg.DB, len(addrs))
	}
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: addrs, DB: cfg.DB, PoolSize: cfg.PoolSize,
		DialTimeout: cfg.Timeout, ReadTimeout: cfg.Timeout, WriteTimeout: cfg.Timeout,
		// Without it go-redis ignores a call's context deadline on socket
		// reads and waits the full ReadTimeout on a hung Redis.
		ContextTimeoutEnabled: true,
		// Fail fast while Redis is down: go-redis would dial 5 times 100 ms
		// apart and retry each command 3 times, so a call took about two
		// seconds to fail (a register lookup then outlived center's wait,
		// and center's route cache was never asked). One dial and one
		// retry (a pooled connection that died with a restarted Redis)
		// fail in milliseconds on a refused port.
		DialerRetries: redisDialAttempts,
		MaxRetries:    redisCommandRetries,
	})
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("%s: cannot start without Redis at %s: %w", svc, cfg.Addrs, err)
	}
	return rdb, nil
}

// IsRedisCluster says whether a -redis value names a Redis Cluster.
func IsRedisCluster(addrs string) bool {
	a, err := RedisAddrs(addrs)
	return err == nil && len(a) > 1
}

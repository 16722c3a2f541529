package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/pushgw/pushgw/pkg/service"
)

const (
	serviceName  = "register"
	defaultGRPC  = "127.0.0.1:7400"
	defaultAdmin = "127.0.0.1:7401"
	// defaultSessionTTL must comfortably exceed the rooms' refresh period
	// so that one late refresh batch does not drop live sessions.
	defaultSessionTTL = 3 * time.Minute
	minSessionTTL     = time.Second
)

// config is everything register is started with.
type config struct {
	common     service.Common
	grpcAddr   string
	redisAddr  string
	redisDB    int
	sessionTTL time.Duration
	gc         service.GCConfig
}

func parseFlags(args []string) (*config, error) {
	var c config
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	c.common.Bind(fs, serviceName, defaultAdmin)
	fs.StringVar(&c.grpcAddr, "grpc", defaultGRPC, "gRPC listen address (rooms and center dial it)")
	fs.StringVar(&c.redisAddr, "redis", service.Env("REDIS", service.DefaultRedis), "Redis address holding the sessions; several comma-separated addresses are seed nodes of a Redis Cluster (PUSHGW_REDIS)")
	fs.IntVar(&c.redisDB, "redis-db", service.EnvInt("REDIS_DB", 0), "Redis database number; must be 0 for a Redis Cluster (PUSHGW_REDIS_DB)")
	fs.DurationVar(&c.sessionTTL, "session-ttl", defaultSessionTTL, "how long a session lives without a refresh")
	c.gc.Bind(fs, service.ServerGCPercent, "higher: less GC CPU per push for a few tens of MB of RSS")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.gc.Validate(); err != nil {
		return nil, err
	}
	if c.sessionTTL < minSessionTTL {
		return nil, fmt.Errorf("register: -session-ttl %s is below %s", c.sessionTTL, minSessionTTL)
	}
	return &c, nil
}

package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/pushgw/pushgw/pkg/service"
)

const (
	serviceName  = "saver"
	defaultGRPC  = "127.0.0.1:7500"
	defaultAdmin = "127.0.0.1:7501"

	defaultMaxDeliveries    = 10
	defaultSweepInterval    = 10 * time.Second
	defaultOutcomeRetention = 24 * time.Hour
)

// config is everything saver is started with.
type config struct {
	common           service.Common
	grpcAddr         string
	redisAddr        string
	redisDB          int
	mysqlDSN         string
	migrateOnly      bool
	maxDeliveries    uint
	sweepInterval    time.Duration
	outcomeRetention time.Duration
}

func parseFlags(args []string) (*config, error) {
	var c config
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	c.common.Bind(fs, serviceName, defaultAdmin)
	fs.StringVar(&c.grpcAddr, "grpc", defaultGRPC, "gRPC listen address (rooms and center dial it)")
	fs.StringVar(&c.redisAddr, "redis", service.Env("REDIS", service.DefaultRedis), "Redis address of the hot inboxes; several comma-separated addresses are seed nodes of a Redis Cluster (PUSHGW_REDIS)")
	fs.IntVar(&c.redisDB, "redis-db", service.EnvInt("REDIS_DB", 0), "Redis database number; must be 0 for a Redis Cluster (PUSHGW_REDIS_DB)")
	fs.StringVar(&c.mysqlDSN, "mysql", service.Env("MYSQL_DSN", service.DefaultMySQLDSN), "MySQL/MariaDB DSN, the source of truth; the database is created if missing (PUSHGW_MYSQL_DSN)")
	fs.BoolVar(&c.migrateOnly, "migrate-only", false, "apply the schema migrations and exit (needs only MySQL)")
	fs.UintVar(&c.maxDeliveries, "max-deliveries", defaultMaxDeliveries, "deliveries without an ack after which a message is dropped as dead")
	fs.DurationVar(&c.sweepInterval, "sweep-interval", defaultSweepInterval, "how often expired messages and old outcomes are swept")
	fs.DurationVar(&c.outcomeRetention, "outcome-retention", defaultOutcomeRetention, "how long Status can still answer for acked, expired or dead messages, and how long an idempotency key is remembered")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case c.maxDeliveries < 1:
		return nil, fmt.Errorf("saver: -max-deliveries must be at least 1")
	case c.sweepInterval < 100*time.Millisecond:
		return nil, fmt.Errorf("saver: -sweep-interval %s is too short", c.sweepInterval)
	case c.outcomeRetention < time.Minute:
		return nil, fmt.Errorf("saver: -outcome-retention %s is below 1m", c.outcomeRetention)
	}
	return &c, nil
}

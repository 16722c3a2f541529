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
	mysqlReplica     string
	db               dbConfig
	migrateOnly      bool
	contract         bool
	gc               service.GCConfig
	maxDeliveries    uint
	sweepInterval    time.Duration
	outcomeRetention time.Duration
}

// migrateCommand is the subcommand form of -migrate-only: "saver migrate
// [flags]" applies the schema migrations and exits.
const migrateCommand = "migrate"

func parseFlags(args []string) (*config, error) {
	c := config{db: defaultDBConfig()}
	name := serviceName
	subcommand := len(args) > 0 && args[0] == migrateCommand
	if subcommand {
		args, name = args[1:], serviceName+" "+migrateCommand
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.common.Bind(fs, serviceName, defaultAdmin)
	fs.StringVar(&c.grpcAddr, "grpc", defaultGRPC, "gRPC listen address (rooms and center dial it)")
	fs.StringVar(&c.redisAddr, "redis", service.Env("REDIS", service.DefaultRedis), "Redis address of the hot inboxes; several comma-separated addresses are seed nodes of a Redis Cluster (PUSHGW_REDIS)")
	fs.IntVar(&c.redisDB, "redis-db", service.EnvInt("REDIS_DB", 0), "Redis database number; must be 0 for a Redis Cluster (PUSHGW_REDIS_DB)")
	fs.StringVar(&c.mysqlDSN, "mysql", service.Env("MYSQL_DSN", service.DefaultMySQLDSN), "MySQL/MariaDB DSN, the source of truth; the database is created if missing (PUSHGW_MYSQL_DSN)")
	fs.BoolVar(&c.migrateOnly, "migrate-only", false, "apply the schema migrations and exit (needs only MySQL); the same as the subcommand \"saver migrate\"")
	fs.BoolVar(&c.contract, "contract", false, "with migrate: also apply contract migrations, which drop what savers of the previous release still use; run it once every saver runs this release (a fresh database gets them anyway)")
	fs.StringVar(&c.mysqlReplica, "mysql-replica", service.Env("MYSQL_REPLICA_DSN", ""), "MySQL DSN of a read replica for reads that tolerate lag (Status); empty: the primary serves them, and so it does while the replica fails (PUSHGW_MYSQL_REPLICA_DSN)")
	fs.IntVar(&c.db.maxOpen, "mysql-max-open", dbMaxOpen, "most open MySQL connections per pool (primary; the replica gets its own pool of the same size)")
	fs.IntVar(&c.db.maxIdle, "mysql-max-idle", dbMaxIdle, "most idle MySQL connections kept per pool")
	fs.DurationVar(&c.db.connMaxLife, "mysql-conn-lifetime", dbConnMaxLife, "MySQL connections are closed and reopened after this long (below the server's wait_timeout and any proxy's idle limit)")
	fs.DurationVar(&c.db.dialTimeout, "mysql-dial-timeout", dbPingTimeout, "MySQL connect timeout, unless the DSN sets timeout=")
	fs.DurationVar(&c.db.readTimeout, "mysql-read-timeout", dbReadTimeout, "MySQL socket read timeout, unless the DSN sets readTimeout= (calls have their own, shorter deadlines; this catches a dead socket)")
	fs.DurationVar(&c.db.writeTimeout, "mysql-write-timeout", dbWriteTimeout, "MySQL socket write timeout, unless the DSN sets writeTimeout=")
	fs.IntVar(&c.db.retry.attempts, "mysql-tx-attempts", maxTxAttempts, "runs of a transaction that InnoDB aborted with a deadlock or lock wait timeout, the first included")
	fs.DurationVar(&c.db.retry.baseDelay, "mysql-tx-retry-delay", txRetryBaseDelay, "wait before re-running an aborted transaction, times the attempt number")
	fs.UintVar(&c.maxDeliveries, "max-deliveries", defaultMaxDeliveries, "deliveries without an ack after which a message is dropped as dead")
	fs.DurationVar(&c.sweepInterval, "sweep-interval", defaultSweepInterval, "how often expired messages and old outcomes are swept")
	fs.DurationVar(&c.outcomeRetention, "outcome-retention", defaultOutcomeRetention, "how long Status can still answer for acked, expired or dead messages, and how long an idempotency key is remembered")
	c.gc.Bind(fs, service.ServerGCPercent, "higher: less GC CPU per push for a few tens of MB of RSS")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.gc.Validate(); err != nil {
		return nil, err
	}
	if subcommand {
		c.migrateOnly = true
	}
	if c.contract && !c.migrateOnly {
		return nil, fmt.Errorf("saver: -contract only goes with migrate (or -migrate-only)")
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("saver: unexpected argument %q (the one subcommand is %q)", fs.Arg(0), migrateCommand)
	}
	if err := c.db.validate(); err != nil {
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

func (d dbConfig) validate() error {
	switch {
	case d.maxOpen < 1:
		return fmt.Errorf("saver: -mysql-max-open %d must be at least 1", d.maxOpen)
	case d.maxIdle < 0 || d.maxIdle > d.maxOpen:
		return fmt.Errorf("saver: -mysql-max-idle %d must be between 0 and -mysql-max-open (%d)", d.maxIdle, d.maxOpen)
	case d.connMaxLife < time.Second:
		return fmt.Errorf("saver: -mysql-conn-lifetime %s is below 1s", d.connMaxLife)
	case d.dialTimeout <= 0 || d.readTimeout <= 0 || d.writeTimeout <= 0:
		return fmt.Errorf("saver: -mysql-dial-timeout, -mysql-read-timeout and -mysql-write-timeout must be positive")
	case d.retry.attempts < 1:
		return fmt.Errorf("saver: -mysql-tx-attempts %d must be at least 1", d.retry.attempts)
	case d.retry.baseDelay < 0:
		return fmt.Errorf("saver: -mysql-tx-retry-delay %s is negative", d.retry.baseDelay)
	}
	return nil
}

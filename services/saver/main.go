// Command saver is pushgw's message store: store-then-send. QoS 1 messages
// are committed to MySQL (the source of truth, group-committed) and indexed
// in a per-user Redis inbox before any delivery; an ack deletes them, the
// sweeper expires them, and a message delivered -max-deliveries times
// without an ack is dropped as dead. See inbox.go for the Redis layout and
// migrations/ for the schema.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/service"
	"github.com/pushgw/pushgw/proto/internalpb"
)

const (
	startTimeout     = 5 * time.Second
	migrateTimeout   = 2 * time.Minute
	shutdownDeadline = 10 * time.Second
	redisPoolSize    = 64
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		service.Fatal(serviceName, err)
	}
	if cfg.migrateOnly {
		err = migrateOnly(cfg)
	} else {
		err = run(cfg)
	}
	if err != nil {
		service.Fatal(serviceName, err)
	}
}

// migrateOnly applies the schema with nothing but MySQL (no etcd, no
// Redis): scripts/deps.sh runs it before anything else is up.
func migrateOnly(cfg *config) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", serviceName)
	mcfg, err := parseDSN(cfg.mysqlDSN)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	if err := migrate(ctx, mcfg, log); err != nil {
		return err
	}
	log.Info("schema up to date", "database", mcfg.DBName)
	return nil
}

func newRedis(ctx context.Context, addr string, db int) (*redis.Client, error) {
	rdb := redis.NewClient(&redis.Options{
		Addr: addr, DB: db, PoolSize: redisPoolSize,
		DialTimeout: 2 * time.Second, ReadTimeout: redisTimeout, WriteTimeout: redisTimeout,
		// Without it go-redis ignores a call's context deadline on socket
		// reads and waits the full ReadTimeout on a hung Redis.
		ContextTimeoutEnabled: true,
	})
	pctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("saver: cannot start without Redis at %s: %w", addr, err)
	}
	return rdb, nil
}

func run(cfg *config) error {
	ctx, stop := service.SignalContext()
	defer stop()

	base, err := service.Start(ctx, serviceName, cfg.common)
	if err != nil {
		return err
	}
	defer base.Close()

	mcfg, err := parseDSN(cfg.mysqlDSN)
	if err != nil {
		return err
	}
	mctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	err = migrate(mctx, mcfg, base.Log)
	cancel()
	if err != nil {
		return fmt.Errorf("saver: cannot start without MySQL schema: %w", err)
	}
	db, err := openDB(ctx, mcfg)
	if err != nil {
		return err
	}
	defer db.Close()
	rdb, err := newRedis(ctx, cfg.redisAddr, cfg.redisDB)
	if err != nil {
		return err
	}
	defer rdb.Close()
	base.AddCheck(db.PingContext)
	// Redis is not in /healthz: saver keeps serving from MySQL without it.

	m := newMetrics(base.Registry)
	mdb, in := &msgDB{db: db}, &inbox{rdb: rdb}
	com := newCommitter(mdb, in, m, base.Log, groupCommitWriters, storeQueueLen)
	srv := &server{db: mdb, inbox: in, committer: com, metrics: m, log: base.Log, maxDeliveries: uint32(cfg.maxDeliveries), multi: make(chan struct{}, multiSlots)}

	sweepCtx, stopSweep := context.WithCancel(context.Background())
	sweepDone := make(chan struct{})
	sw := &sweeper{db: mdb, inbox: in, metrics: m, log: base.Log, interval: cfg.sweepInterval, retention: cfg.outcomeRetention}
	go func() { sw.run(sweepCtx); close(sweepDone) }()

	gs := grpc.NewServer(append(grpcconn.ServerOptions(), grpc.ChainUnaryInterceptor(m.interceptor))...)
	internalpb.RegisterSaverServer(gs, srv)
	serving, err := base.ServeGRPC(ctx, gs, cfg.grpcAddr, discovery.Instance{Service: discovery.ServiceSaver})
	if err != nil {
		stopSweep()
		com.close()
		return err
	}
	base.Log.Info("serving", "grpc", cfg.grpcAddr, "redis", cfg.redisAddr, "redis_db", cfg.redisDB,
		"mysql", mcfg.Addr+"/"+mcfg.DBName, "max_deliveries", cfg.maxDeliveries)

	serving.Wait(ctx)
	dctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
	defer cancel()
	serving.Shutdown(dctx)
	// Commit what is queued: those callers may already have gone, but
	// their retries are idempotent either way.
	com.close()
	stopSweep()
	<-sweepDone
	base.Log.Info("stopped")
	return nil
}

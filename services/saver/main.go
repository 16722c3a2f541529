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
		err = migrateOnly(cfg, slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", serviceName))
	} else {
		err = run(cfg)
	}
	if err != nil {
		service.Fatal(serviceName, err)
	}
}

// migrateOnly ("saver migrate", or -migrate-only) applies the schema with
// nothing but MySQL (no etcd, no Redis): scripts/deps.sh runs it before
// anything else is up, and operators before a rollout. Idempotent.
func migrateOnly(cfg *config, log *slog.Logger) error {
	mcfg, err := parseDSN(cfg.mysqlDSN)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), migrateTimeout)
	defer cancel()
	if err := migrate(ctx, mcfg, log, cfg.contract); err != nil {
		return err
	}
	log.Info("schema up to date", "database", mcfg.DBName)
	return nil
}

func newRedis(ctx context.Context, addrs string, db int) (redis.UniversalClient, error) {
	return service.NewRedis(ctx, serviceName, service.RedisConfig{Addrs: addrs, DB: db, PoolSize: redisPoolSize, Timeout: redisTimeout})
}

func run(cfg *config) error {
	ctx, stop := service.SignalContext()
	defer stop()

	base, err := service.Start(ctx, serviceName, cfg.common)
	if err != nil {
		return err
	}
	cfg.gc.Apply(base.Log)
	defer base.Close()

	mcfg, err := parseDSN(cfg.mysqlDSN)
	if err != nil {
		return err
	}
	mctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	err = migrate(mctx, mcfg, base.Log, false)
	cancel()
	if err != nil {
		return fmt.Errorf("saver: cannot start without MySQL schema: %w", err)
	}
	db, err := openPool(ctx, mcfg, cfg.db)
	if err != nil {
		return err
	}
	defer db.Close()
	var rep *replica
	if cfg.mysqlReplica != "" {
		rcfg, err := parseDSN(cfg.mysqlReplica)
		if err != nil {
			return fmt.Errorf("saver: -mysql-replica: %w", err)
		}
		if rep, err = openReplica(ctx, rcfg, cfg.db, base.Registry, base.Log); err != nil {
			return fmt.Errorf("saver: -mysql-replica: %w", err)
		}
		defer rep.close()
	}
	rdb, err := newRedis(ctx, cfg.redisAddr, cfg.redisDB)
	if err != nil {
		return err
	}
	defer rdb.Close()
	base.AddCheck(db.PingContext)
	// Redis is not in /healthz: saver keeps serving from MySQL without it.

	m := newMetrics(base.Registry)
	mdb, in := &msgDB{db: db, replica: rep, retry: cfg.db.retry}, &inbox{rdb: rdb}
	com := newCommitter(mdb, in, m, base.Log, groupCommitWriters, storeQueueLen)
	srv := &server{db: mdb, inbox: in, committer: com, metrics: m, log: base.Log, maxDeliveries: uint32(cfg.maxDeliveries), multi: make(chan struct{}, multiSlots)}
	tags := newTagStore(mdb, rdb, newTagMetrics(base.Registry), base.Log)
	defer tags.close()
	srv.tags = tags

	sweepCtx, stopSweep := context.WithCancel(context.Background())
	sweepDone := make(chan struct{})
	sw := &sweeper{db: mdb, inbox: in, metrics: m, log: base.Log, interval: cfg.sweepInterval, retention: cfg.outcomeRetention}
	go func() { sw.run(sweepCtx); close(sweepDone) }()
	pruneDone := make(chan struct{})
	go func() { pruneBroadcastsLoop(sweepCtx, mdb, base.Log, cfg.sweepInterval); close(pruneDone) }()
	txm := newTxMetrics(base.Registry)
	txSweepDone := make(chan struct{})
	txw := &txSweeper{db: &txDB{db: db}, metrics: txm, log: base.Log, interval: cfg.sweepInterval, retention: cfg.outcomeRetention}
	go func() { txw.run(sweepCtx); close(txSweepDone) }()
	backlogDone := make(chan struct{})
	go func() {
		newEventBacklog(db, base.Registry, base.Log).run(sweepCtx, eventBacklogEvery)
		close(backlogDone)
	}()

	gs := grpc.NewServer(append(grpcconn.ServerOptions(), grpc.ChainUnaryInterceptor(m.interceptor))...)
	internalpb.RegisterSaverServer(gs, srv)
	internalpb.RegisterSaverTxServer(gs, newTxServer(srv, txm))
	internalpb.RegisterSaverEventsServer(gs, newEventsServer(srv, base.Registry))
	serving, err := base.ServeGRPC(ctx, gs, cfg.grpcAddr, discovery.Instance{Service: discovery.ServiceSaver})
	if err != nil {
		stopSweep()
		com.close()
		return err
	}
	base.Log.Info("serving", "grpc", cfg.grpcAddr, "redis", cfg.redisAddr, "redis_db", cfg.redisDB,
		"mysql", mcfg.Addr+"/"+mcfg.DBName, "mysql_replica", cfg.mysqlReplica != "", "max_deliveries", cfg.maxDeliveries)

	serving.Wait(ctx)
	dctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
	defer cancel()
	serving.Shutdown(dctx)
	// Commit what is queued: those callers may already have gone, but
	// their retries are idempotent either way.
	com.close()
	stopSweep()
	<-sweepDone
	<-pruneDone
	<-txSweepDone
	<-backlogDone
	base.Log.Info("stopped")
	return nil
}

// Command center is pushgw's business-facing HTTP/JSON API: push to users,
// message status, sessions and kick (docs/openapi.yaml).
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/panjf2000/ants/v2"
	"github.com/redis/go-redis/v9"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/ids"
	"github.com/pushgw/pushgw/pkg/service"
)

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if err != nil {
		service.Fatal(serviceName, err)
	}
	if err := run(cfg); err != nil {
		service.Fatal(serviceName, err)
	}
}

func run(cfg Config) error {
	ctx, stop := service.SignalContext()
	defer stop()

	base, err := service.Start(ctx, serviceName, cfg.Common)
	if err != nil {
		return err
	}
	cfg.GC.Apply(base.Log)
	defer base.Close()
	log := base.Log

	startCtx, cancel := context.WithTimeout(ctx, discovery.DefaultDialTimeout)
	defer cancel()
	apps, err := appconfig.Load(startCtx, base.Etcd, cfg.Common.Cluster, log)
	if err != nil {
		return fmt.Errorf("center: load app configs: %w", err)
	}
	defer apps.Close()
	lease, gen, err := ids.Acquire(startCtx, base.Etcd, cfg.Common.Cluster, log)
	if err != nil {
		return fmt.Errorf("center: acquire id node: %w", err)
	}
	defer lease.Close()

	watchers := map[string]*discovery.Watcher{}
	for _, svc := range []string{discovery.ServiceRegister, discovery.ServiceSaver, discovery.ServiceRoom} {
		w := discovery.Watch(base.Etcd, cfg.Common.Cluster, svc, log)
		defer w.Close()
		if err := w.WaitReady(startCtx); err != nil {
			return fmt.Errorf("center: list %s instances: %w", svc, err)
		}
		watchers[svc] = w
	}
	registerConn, err := grpcconn.DialService(watchers[discovery.ServiceRegister])
	if err != nil {
		return fmt.Errorf("center: register: %w", err)
	}
	defer registerConn.Close()
	saverConn, err := grpcconn.DialService(watchers[discovery.ServiceSaver])
	if err != nil {
		return fmt.Errorf("center: saver: %w", err)
	}
	defer saverConn.Close()
	rooms := newRoomSet()
	rooms.follow(watchers[discovery.ServiceRoom])
	defer rooms.close()

	pool, err := ants.NewPool(cfg.DeliveryPool, ants.WithNonblocking(true))
	if err != nil {
		return fmt.Errorf("center: delivery pool: %w", err)
	}
	srv := newServer(apps, gen, saverConn, registerConn, rooms, pool, newMetrics(base.Registry), log, cfg.RequestTimeout)
	// Redis holds the per-app limits; center starts without it and
	// fails open (ratelimit.go), so it is not in /healthz either.
	// One -redis address is one server, several are a Redis Cluster, as
	// for register and saver; every key here is a single key per command.
	addrs, err := service.RedisAddrs(cfg.RedisAddr)
	if err != nil {
		return fmt.Errorf("center: -redis: %w", err)
	}
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, DB: cfg.RedisDB, DialTimeout: redisDialTimeout,
		ReadTimeout: redisIOTimeout, WriteTimeout: redisIOTimeout, ContextTimeoutEnabled: true})
	defer rdb.Close()
	if err := rdb.Ping(startCtx).Err(); err != nil {
		log.Warn("center: Redis not reachable at start; rate limits fail open and pacing is per center until it is", "redis", cfg.RedisAddr, "err", err)
	}
	srv.useRedis(rdb)
	srv.routes = newRouteCache(cfg.RouteCacheSize, cfg.RouteCacheTTL)
	redeliver := startRedeliverer(srv, cfg.RedeliverInterval)
	srv.txm = newTxMetrics(base.Registry)
	txChecks := startTxChecker(srv, apps, cfg.Tx)
	defer txChecks.stop()
	defer redeliver.stop() // idempotent with the stop below; covers early returns
	srv.bcast.rooms = watchers[discovery.ServiceRoom]
	srv.bcast.resends = broadcastResendDelays(cfg.BroadcastResends)
	bsweep := startBroadcastSweeper(srv.bcast, cfg.RedeliverInterval)
	defer bsweep.stop()

	srv.admin = newAdminAPI(srv, cfg.AdminKey, base.Etcd, cfg.Common.Cluster, watchers[discovery.ServiceRoom])
	if cfg.AdminKey == defaultAdminKey {
		log.Warn("center: the admin API takes the development default key; set -admin-key (PUSHGW_ADMIN_KEY) outside development")
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      max(cfg.RequestTimeout, multiRequestTimeout) + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	serving, err := base.ServeHTTP(startCtx, httpSrv, cfg.HTTPAddr, discovery.Instance{Service: discovery.ServiceCenter})
	if err != nil {
		return err
	}
	log.Info("center: serving", "http", cfg.HTTPAddr)
	grpcAPI, err := startGRPCAPI(srv, cfg.GRPCAPIAddr)
	if err != nil {
		serving.Shutdown(startCtx)
		return err
	}
	log.Info("center: serving", "grpc_api", cfg.GRPCAPIAddr)

	serving.Wait(ctx)

	// Deregister first so no new traffic is routed here, then finish
	// in-flight requests, then in-flight deliveries.
	shutCtx, shutCancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer shutCancel()
	serving.Shutdown(shutCtx)
	grpcAPI.stop(shutCtx)
	srv.stopFanouts()
	redeliver.stop()
	bsweep.stop()
	if err := srv.bcast.stop(shutCtx); err != nil {
		log.Warn("center: shutdown deadline passed while broadcasting; the sweep of another center resends", "err", err)
	}
	txChecks.stop()
	if err := srv.stores.close(shutCtx); err != nil {
		log.Warn("center: shutdown deadline passed while storing", "err", err)
	}
	if err := srv.batch.close(shutCtx); err != nil {
		log.Warn("center: shutdown deadline passed while delivering; the messages stay stored", "err", err)
	}
	srv.retry.stop()
	if err := pool.ReleaseTimeout(time.Until(deadlineOf(shutCtx))); err != nil {
		log.Warn("center: deliveries still running at shutdown; their messages stay stored", "err", err)
	}
	log.Info("center: stopped")
	return nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

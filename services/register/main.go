// Command register is pushgw's global session store: (app, user, device)
// -> room instance + connection, in Redis with per-device TTLs that rooms
// refresh in batches. See store.go for the Redis layout.
package main

import (
	"context"
	"errors"
	"flag"
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
	shutdownDeadline = 10 * time.Second
	redisPoolSize    = 64
	redisTimeout     = 2 * time.Second
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		service.Fatal(serviceName, err)
	}
	if err := run(cfg); err != nil {
		service.Fatal(serviceName, err)
	}
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

	rdb, err := newRedis(ctx, cfg.redisAddr, cfg.redisDB)
	if err != nil {
		return err
	}
	defer rdb.Close()
	st := &store{rdb: rdb, ttl: cfg.sessionTTL}
	lctx, cancel := context.WithTimeout(ctx, startTimeout)
	err = st.loadScripts(lctx)
	cancel()
	if err != nil {
		return err
	}
	base.AddCheck(func(ctx context.Context) error { return rdb.Ping(ctx).Err() })

	m := newMetrics(base.Registry)
	srv := &server{store: st, epochs: newEpochs(rdb), metrics: m, log: base.Log}
	gs := grpc.NewServer(append(grpcconn.ServerOptions(), grpc.ChainUnaryInterceptor(m.interceptor))...)
	internalpb.RegisterRegisterServer(gs, srv)
	serving, err := base.ServeGRPC(ctx, gs, cfg.grpcAddr, discovery.Instance{Service: discovery.ServiceRegister})
	if err != nil {
		return err
	}
	base.Log.Info("serving", "grpc", cfg.grpcAddr, "redis", cfg.redisAddr, "redis_db", cfg.redisDB, "session_ttl", cfg.sessionTTL.String())

	serving.Wait(ctx)
	dctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
	defer cancel()
	serving.Shutdown(dctx)
	base.Log.Info("stopped")
	return nil
}

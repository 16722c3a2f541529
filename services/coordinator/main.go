// Command coordinator forwards client uplink data from rooms to each app's
// webhook and returns the webhook's reply.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/service"
	"github.com/pushgw/pushgw/proto/internalpb"
)

const shutdownTimeout = 10 * time.Second

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
	defer base.Close()
	log := base.Log

	startCtx, cancel := context.WithTimeout(ctx, discovery.DefaultDialTimeout)
	defer cancel()
	apps, err := appconfig.Load(startCtx, base.Etcd, cfg.Common.Cluster, log)
	if err != nil {
		return fmt.Errorf("coordinator: load app configs: %w", err)
	}
	defer apps.Close()

	gs := grpc.NewServer(grpcconn.ServerOptions()...)
	srv := newServer(apps, cfg.webhookLimits(), newMetrics(base.Registry), log)
	internalpb.RegisterCoordinatorServer(gs, srv)
	stopEvents, err := startEvents(ctx, base, cfg, apps, srv.hook)
	if err != nil {
		return err
	}
	defer stopEvents()
	serving, err := base.ServeGRPC(ctx, gs, cfg.GRPCAddr, discovery.Instance{Service: discovery.ServiceCoordinator})
	if err != nil {
		return err
	}
	log.Info("coordinator: serving", "grpc", cfg.GRPCAddr)

	serving.Wait(ctx)
	// In-flight uplinks are bounded by -webhook-timeout; Shutdown
	// waits for them, but not past the deadline.
	shutCtx, shutCancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer shutCancel()
	serving.Shutdown(shutCtx)
	log.Info("coordinator: stopped")
	return nil
}

// Command coordinator forwards client uplink data from rooms to each app's
// webhook and returns the webhook's reply.
package main

import (
	"context"
	"fmt"
	"net"
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

	ln, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("coordinator: listen -grpc %s: %w", cfg.GRPCAddr, err)
	}
	gs := grpc.NewServer(grpcconn.ServerOptions()...)
	internalpb.RegisterCoordinatorServer(gs, newServer(apps, cfg.WebhookTimeout, cfg.WebhookConcurrency, newMetrics(base.Registry), log))
	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(ln) }()

	reg, err := discovery.Register(startCtx, base.Etcd, cfg.Common.Cluster, discovery.Instance{
		Service: discovery.ServiceCoordinator, ID: cfg.Common.Instance, Addr: ln.Addr().String(), IDC: cfg.Common.IDC,
	}, discovery.DefaultLeaseTTL, log)
	if err != nil {
		gs.Stop()
		return fmt.Errorf("coordinator: register in etcd: %w", err)
	}
	log.Info("coordinator: serving", "grpc", ln.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		log.Error("coordinator: grpc server stopped", "err", err)
	}
	shutCtx, shutCancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer shutCancel()
	if err := reg.Close(shutCtx); err != nil {
		log.Warn("coordinator: deregister", "err", err)
	}
	// Let in-flight webhook calls finish (they are bounded by
	// -webhook-timeout), but not past the shutdown deadline.
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-shutCtx.Done():
		gs.Stop()
	}
	log.Info("coordinator: stopped")
	return nil
}

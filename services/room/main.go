// Command room is the pushgw gateway: it holds client connections,
// authenticates them, keeps heartbeats, registers sessions, delivers pushes,
// collects acks and forwards uplink data.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/service"
)

// startTimeout bounds loading app configs at start.
const startTimeout = 5 * time.Second

func main() {
	var cfg config
	fs := flag.NewFlagSet("room", flag.ExitOnError)
	cfg.bind(fs)
	_ = fs.Parse(os.Args[1:])
	if err := cfg.validate(); err != nil {
		service.Fatal("room", err)
	}
	if err := run(cfg); err != nil {
		service.Fatal("room", err)
	}
}

func run(cfg config) error {
	ctx, stop := service.SignalContext()
	defer stop()
	base, err := service.Start(ctx, "room", cfg.common)
	if err != nil {
		return err
	}
	defer base.Close()
	cfg.gc.Apply(base.Log)

	lctx, cancel := context.WithTimeout(ctx, startTimeout)
	apps, err := appconfig.Load(lctx, base.Etcd, cfg.common.Cluster, base.Log)
	cancel()
	if err != nil {
		return fmt.Errorf("room: %w", err)
	}
	defer apps.Close()

	p, err := dialPeers(ctx, base.Etcd, cfg.common.Cluster, base.Log)
	if err != nil {
		return err
	}
	defer p.Close()

	srv, err := startServer(ctx, cfg, serverDeps{
		etcd: base.Etcd, log: base.Log, registry: base.Registry, secretOf: apps.Secret, peers: p,
		subscribes: func(app, event string) bool { a, ok := apps.Get(app); return ok && a.Subscribes(event) },
		appOf:      apps.Get,
	})
	if err != nil {
		return err
	}
	base.Started()
	// A drain requested through etcd (drain_mark.go) ends the process
	// like SIGTERM once it has emptied the room.
	drained := srv.watchDrain(base.Etcd, base.Registry, base.SetHealthy)
	select {
	case <-ctx.Done():
		base.Log.Info("room: signal received; draining")
	case <-drained.Done():
		base.Log.Info("room: requested drain done; shutting down")
	}
	base.SetHealthy(false)
	srv.shutdown()
	return nil
}

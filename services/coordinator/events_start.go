package main

import (
	"context"
	"fmt"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/service"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// startEvents dials saver (found in etcd, like every peer) and starts
// delivering the outbox's events; the returned stop waits for the workers
// to settle what they hold.
func startEvents(ctx context.Context, base *service.Base, cfg Config, apps *appconfig.Store, hook *webhookClient) (func(), error) {
	w := discovery.Watch(base.Etcd, cfg.Common.Cluster, discovery.ServiceSaver, base.Log)
	cc, err := grpcconn.DialService(w)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("coordinator: saver: %w", err)
	}
	d := newEventDelivery(internalpb.NewSaverEventsClient(cc), apps, hook, cfg.Events, newEventMetrics(base.Registry), base.Log)
	if err := base.Registry.Register(appQueueCollector{d}); err != nil {
		cc.Close()
		w.Close()
		return nil, fmt.Errorf("coordinator: per-app queue metric: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.run(runCtx)
	}()
	return func() {
		cancel()
		<-done
		cc.Close()
		w.Close()
	}, nil
}

// Command dispatcher tells clients which rooms to connect to: an ordered
// list of room endpoints with per-user affinity (rendezvous hashing).
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/service"
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

func newServer(reg prometheus.Registerer, idc string) *server {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_dispatcher_requests_total",
		Help: "Endpoint requests by result code (OK or an error code).",
	}, []string{"code"})
	rooms := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pushgw_dispatcher_rooms",
		Help: "Rooms currently offered to clients (registered, not draining, with a tcp endpoint).",
	})
	reg.MustRegister(requests, rooms)
	return &server{rooms: &roomTable{gauge: rooms.Set}, idc: idc, requests: requests}
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
	w := discovery.Watch(base.Etcd, cfg.Common.Cluster, discovery.ServiceRoom, log)
	defer w.Close()
	if err := w.WaitReady(startCtx); err != nil {
		return fmt.Errorf("dispatcher: list rooms: %w", err)
	}
	srv := newServer(base.Registry, cfg.Common.IDC)
	srv.rooms.follow(w)

	httpSrv := &http.Server{
		Handler:           srv.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
	}
	serving, err := base.ServeHTTP(startCtx, httpSrv, cfg.HTTPAddr, discovery.Instance{Service: discovery.ServiceDispatcher})
	if err != nil {
		return err
	}
	log.Info("dispatcher: serving", "http", cfg.HTTPAddr)

	serving.Wait(ctx)
	shutCtx, shutCancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer shutCancel()
	serving.Shutdown(shutCtx)
	log.Info("dispatcher: stopped")
	return nil
}

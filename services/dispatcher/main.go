// Command dispatcher tells clients which rooms to connect to: an ordered
// list of room endpoints with per-user affinity (rendezvous hashing).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
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

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("dispatcher: listen -http %s: %w", cfg.HTTPAddr, err)
	}
	httpSrv := &http.Server{
		Handler:           srv.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	reg, err := discovery.Register(startCtx, base.Etcd, cfg.Common.Cluster, discovery.Instance{
		Service: discovery.ServiceDispatcher, ID: cfg.Common.Instance,
		Endpoints: map[string]string{"http": ln.Addr().String()}, IDC: cfg.Common.IDC,
	}, discovery.DefaultLeaseTTL, log)
	if err != nil {
		_ = httpSrv.Close()
		return fmt.Errorf("dispatcher: register in etcd: %w", err)
	}
	log.Info("dispatcher: serving", "http", ln.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		log.Error("dispatcher: http server stopped", "err", err)
	}
	shutCtx, shutCancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer shutCancel()
	if err := reg.Close(shutCtx); err != nil {
		log.Warn("dispatcher: deregister", "err", err)
	}
	if err := httpSrv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("dispatcher: http shutdown", "err", err)
	}
	log.Info("dispatcher: stopped")
	return nil
}

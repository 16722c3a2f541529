// Command dispatcher tells clients which rooms to connect to: an ordered
// list of room endpoints with per-user affinity (rendezvous hashing).
package main

import (
	"context"
	"fmt"
	"log/slog"
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

// serverOptions are the ranking and limiting knobs of Config.
type serverOptions struct {
	idc           string
	overload      int64
	ipRate        float64
	ipBurst       int
	ipMax         int
	limitLoopback bool
}

func optionsOf(cfg Config) serverOptions {
	return serverOptions{
		idc: cfg.Common.IDC, overload: cfg.Overload, ipRate: cfg.IPRate, ipBurst: cfg.IPBurst,
		ipMax: cfg.IPMax, limitLoopback: cfg.LimitLoopback,
	}
}

func newServer(reg prometheus.Registerer, o serverOptions) *server {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_dispatcher_requests_total",
		Help: "Endpoint requests by result code (OK or an error code).",
	}, []string{"code"})
	rooms := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pushgw_dispatcher_rooms",
		Help: "Rooms currently offered to clients (registered, not draining, with a tcp endpoint).",
	})
	reg.MustRegister(requests, rooms)
	s := &server{
		rooms: &roomTable{gauge: rooms.Set}, idc: o.idc, requests: requests, overload: o.overload,
		limiter: newIPLimiter(o.ipRate, o.ipBurst, o.ipMax), limitLoopback: o.limitLoopback,
	}
	if s.limiter != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pushgw_dispatcher_ratelimit_tracked_ips",
			Help: "Client IPs the per-IP rate limit tracks (bounded by -ip-max).",
		}, func() float64 { return float64(s.limiter.size()) }))
	}
	return s
}

// withPeerSet makes s offer the rooms of the dispatchers at urls after its
// own; the caller runs the returned set's refresh loop.
func (s *server) withPeerSet(reg prometheus.Registerer, urls []string, timeout, every, maxStale time.Duration, log *slog.Logger) *peerSet {
	fetches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_dispatcher_peer_fetches_total",
		Help: "Fetches of peer IDC dispatchers' rooms by peer URL and result (ok, error).",
	}, []string{"peer", "result"})
	reg.MustRegister(fetches)
	s.peers = newPeerSet(urls, timeout, every, maxStale, log, fetches)
	return s.peers
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
	srv := newServer(base.Registry, optionsOf(cfg))
	srv.rooms.follow(w)
	if len(cfg.Peers) > 0 {
		peers := srv.withPeerSet(base.Registry, cfg.Peers, cfg.PeerTimeout, cfg.PeerRefresh, cfg.PeerStale, log)
		go peers.run(ctx)
	}

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

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// loadInterval is how often the live connection count is published.
const loadInterval = 2 * time.Second

// serverDeps are what a room server needs from the process around it.
type serverDeps struct {
	etcd     *clientv3.Client
	log      *slog.Logger
	registry prometheus.Registerer
	secretOf func(app string) ([]byte, bool)
	peers    *peers
	// subscribes: whether an app takes an event (events.go).
	subscribes func(app, event string) bool
	// appOf reads an app's config (vendor and login policy, policy.go).
	appOf func(app string) (appconfig.App, bool)
}

// server is a running room: listeners, engine, gRPC service, registration.
type server struct {
	cfg  config
	log  *slog.Logger
	r    *room
	eng  engine
	gs   *grpc.Server
	reg  *discovery.Registration
	adm  *admissionWatch
	stop chan struct{}
	done chan struct{}

	// drain follows the room's drain mark in etcd (drain_mark.go); nil
	// until watchDrain, and a nil one does nothing.
	drain *drainCtl
}

// startServer listens on -tcp and -grpc, starts serving and registers the
// instance in etcd.
func startServer(ctx context.Context, cfg config, d serverDeps) (*server, error) {
	r, err := newRoom(cfg, roomDeps{
		log: d.log, metrics: newMetrics(d.registry), secretOf: d.secretOf,
		register: d.peers.register, saver: d.peers.saver, coordinator: d.peers.coordinator,
		events: d.peers.events, subscribes: d.subscribes,
	})
	if err != nil {
		return nil, err
	}
	if r.multi, err = newMultiApp(r, d, cfg.common.Cluster); err != nil {
		r.close()
		return nil, err
	}
	d.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "pushgw_room_socket_writes_total",
		Help: "Writes to client sockets; frames out / writes is the coalescing factor.",
	}, func() float64 { return float64(r.engStats.writes.Load()) }))
	s := &server{cfg: cfg, log: d.log, r: r, stop: make(chan struct{}), done: make(chan struct{})}
	s.adm = watchAdmission(d.etcd, cfg.common.Cluster, r.adm, d.log, r.m.admissionBad.Inc)
	grpcLn, err := net.Listen("tcp", cfg.grpc)
	if err != nil {
		s.abortStart()
		return nil, fmt.Errorf("room: listen -grpc %s: %w", cfg.grpc, err)
	}
	s.gs = grpc.NewServer(grpcconn.ServerOptions()...)
	internalpb.RegisterRoomServer(s.gs, &roomRPC{r: r})
	go func() {
		if err := s.gs.Serve(grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			d.log.Error("room: grpc server stopped", "err", err)
		}
	}()
	lim := engineLimits{maxBody: cfg.maxFrame, preAuthBody: min(cfg.maxFrame, maxAuthBody), sendQueue: cfg.sendQueue, stats: &r.engStats}
	if s.eng, err = newEngine(cfg.engine, r, lim, d.log); err == nil {
		err = s.eng.Listen(cfg.tcp)
	}
	if err != nil {
		s.gs.Stop()
		s.abortStart()
		return nil, fmt.Errorf("room: listen -tcp %s: %w", cfg.tcp, err)
	}
	s.reg, err = discovery.Register(ctx, d.etcd, cfg.common.Cluster, discovery.Instance{
		Service: discovery.ServiceRoom, ID: cfg.common.Instance, Addr: cfg.grpc,
		Endpoints: map[string]string{"tcp": cfg.advertiseTCP}, IDC: cfg.common.IDC,
	}, 0, d.log)
	if err != nil {
		s.stopEngine()
		s.gs.Stop()
		s.abortStart()
		return nil, fmt.Errorf("room: %w", err)
	}
	go s.loadLoop()
	d.log.Info("room serving", "tcp", cfg.tcp, "advertise_tcp", cfg.advertiseTCP, "grpc", cfg.grpc,
		"heartbeat", cfg.heartbeat, "max_conns", cfg.maxConns, "engine", cfg.engine)
	return s, nil
}

func (s *server) abortStart() {
	s.adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.r.sessions.Close(ctx)
	_ = s.r.reports.Close(ctx)
	s.r.close()
}

// loadLoop publishes the live connection count when it changes.
func (s *server) loadLoop() {
	defer close(s.done)
	t := time.NewTicker(loadInterval)
	defer t.Stop()
	var last int64 = -1
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if n := s.r.conns.Load(); n != last {
				last = n
				s.reg.Update(func(in *discovery.Instance) { in.Load = n })
			}
		}
	}
}

// stopEngine releases the engine's listeners and loops.
func (s *server) stopEngine() {
	ctx, cancel := context.WithTimeout(context.Background(), drainEngineWait)
	defer cancel()
	if err := s.eng.Stop(ctx); err != nil {
		s.log.Warn("room: engine stop", "err", err)
	}
}

package service

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// announceTimeout bounds the first registration in etcd.
const announceTimeout = 5 * time.Second

// GRPCServing is a gRPC server that is listening and announced in etcd.
type GRPCServing struct {
	base *Base
	gs   *grpc.Server
	reg  *discovery.Registration
	errc chan error
}

// ServeGRPC listens on addr, serves gs in the background and registers
// inst (with Addr set to addr) in etcd, so peers only find the instance once
// it can answer. On error nothing is left running.
func (b *Base) ServeGRPC(ctx context.Context, gs *grpc.Server, addr string, inst discovery.Instance) (*GRPCServing, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", b.Name, addr, err)
	}
	s := &GRPCServing{base: b, gs: gs, errc: make(chan error, 1)}
	go func() { s.errc <- gs.Serve(ln) }()
	inst.Addr = addr
	if inst.ID == "" {
		inst.ID = b.Common.Instance
	}
	if inst.IDC == "" {
		inst.IDC = b.Common.IDC
	}
	rctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	s.reg, err = discovery.Register(rctx, b.Etcd, b.Common.Cluster, inst, discovery.DefaultLeaseTTL, b.Log)
	if err != nil {
		gs.Stop()
		return nil, fmt.Errorf("%s: register in etcd: %w", b.Name, err)
	}
	return s, nil
}

// Registration is the instance's etcd registration (for load updates).
func (s *GRPCServing) Registration() *discovery.Registration { return s.reg }

// Wait blocks until ctx ends (a signal) or the server stops on its own.
func (s *GRPCServing) Wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case err := <-s.errc:
		s.base.Log.Error("grpc server stopped", "err", err)
	}
}

// Shutdown marks the instance unhealthy, deregisters it so no new calls are
// routed here, then lets in-flight calls finish, but not past ctx.
func (s *GRPCServing) Shutdown(ctx context.Context) {
	s.base.SetHealthy(false)
	if err := s.reg.Close(ctx); err != nil {
		s.base.Log.Warn("deregister failed", "err", err)
	}
	GracefulStop(ctx, s.gs)
}

// GracefulStop lets in-flight calls of gs finish, but not past ctx.
func GracefulStop(ctx context.Context, gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		gs.Stop()
	}
}

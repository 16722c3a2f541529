package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// announceTimeout bounds the first registration in etcd.
const announceTimeout = 5 * time.Second

// Serving is a server that is listening and announced in etcd.
type Serving struct {
	base *Base
	reg  *discovery.Registration
	errc chan error
	stop func(context.Context)
}

// ServeGRPC listens on addr, serves gs in the background and registers
// inst (Addr set to addr) in etcd, so peers only find the instance once it
// can answer. On error nothing is left running.
func (b *Base) ServeGRPC(ctx context.Context, gs *grpc.Server, addr string, inst discovery.Instance) (*Serving, error) {
	inst.Addr = addr
	return b.serve(ctx, addr, inst,
		func(ln net.Listener) error { return gs.Serve(ln) },
		func(ctx context.Context) { GracefulStop(ctx, gs) })
}

// ServeHTTP is ServeGRPC for an HTTP server; inst gets the "http" endpoint.
func (b *Base) ServeHTTP(ctx context.Context, hs *http.Server, addr string, inst discovery.Instance) (*Serving, error) {
	if inst.Endpoints == nil {
		inst.Endpoints = map[string]string{}
	}
	inst.Endpoints["http"] = addr
	return b.serve(ctx, addr, inst,
		func(ln net.Listener) error {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		func(ctx context.Context) {
			if err := hs.Shutdown(ctx); err != nil {
				b.Log.Warn("http shutdown", "err", err)
				_ = hs.Close()
			}
		})
}

func (b *Base) serve(ctx context.Context, addr string, inst discovery.Instance, serve func(net.Listener) error, stop func(context.Context)) (*Serving, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", b.Name, addr, err)
	}
	s := &Serving{base: b, errc: make(chan error, 1), stop: stop}
	go func() { s.errc <- serve(ln) }()
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
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		defer scancel()
		stop(sctx)
		return nil, fmt.Errorf("%s: register in etcd: %w", b.Name, err)
	}
	b.Started()
	return s, nil
}

// Registration is the instance's etcd registration (for load updates).
func (s *Serving) Registration() *discovery.Registration { return s.reg }

// Wait blocks until ctx ends (a signal) or the server stops on its own.
func (s *Serving) Wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case err := <-s.errc:
		s.base.Log.Error("server stopped", "err", err)
	}
}

// Shutdown marks the instance unhealthy, deregisters it so no new traffic is
// routed here, then lets in-flight requests finish, but not past ctx.
func (s *Serving) Shutdown(ctx context.Context) {
	s.base.SetHealthy(false)
	if err := s.reg.Close(ctx); err != nil {
		s.base.Log.Warn("deregister failed", "err", err)
	}
	s.stop(ctx)
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

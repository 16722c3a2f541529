package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/apipb"
)

// Bounds of the public gRPC listener.
const (
	defaultGRPCAPIAddr = "127.0.0.1:7002"
	// grpcAPIMaxStreams bounds concurrent calls per connection.
	grpcAPIMaxStreams = 1024
	// grpcAPIKeepaliveMin is the shortest client ping interval accepted.
	grpcAPIKeepaliveMin = 10 * time.Second
)

// grpcAPIServer is the running -grpc-api listener.
type grpcAPIServer struct {
	gs   *grpc.Server
	done chan error
}

// startGRPCAPI serves the PushAPI on addr until stop.
func startGRPCAPI(s *Server, addr string) (*grpcAPIServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("center: grpc api listen %s: %w", addr, err)
	}
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxBodyBytes),
		grpc.MaxConcurrentStreams(grpcAPIMaxStreams),
		grpc.StaticStreamWindowSize(grpcconn.StreamWindow),
		grpc.StaticConnWindowSize(grpcconn.ConnWindow),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: grpcAPIKeepaliveMin, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamAuth),
	)
	apipb.RegisterPushAPIServer(gs, &grpcAPI{s: s})
	g := &grpcAPIServer{gs: gs, done: make(chan error, 1)}
	go func() { g.done <- gs.Serve(ln) }()
	return g, nil
}

// stop finishes running calls, or cuts them when ctx ends first.
func (g *grpcAPIServer) stop(ctx context.Context) {
	stopped := make(chan struct{})
	go func() {
		g.gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		g.gs.Stop()
		<-stopped
	}
}

// Package grpcconn dials pushgw's internal gRPC services: one long-lived
// multiplexed connection per peer, either to a whole service (load-balanced
// over the instances discovery knows) or to one instance by address.
package grpcconn

import (
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// DefaultCallTimeout is the deadline callers put on internal calls unless
// they have a tighter one.
const DefaultCallTimeout = 3 * time.Second

// reconnectBackoff paces redials of a lost peer. gRPC's default grows to
// 120 s; here a restarted register or saver, back within seconds, must be
// used again within a second of it answering, and a redial a second per
// peer costs nothing on an internal network.
var reconnectBackoff = backoff.Config{
	BaseDelay:  100 * time.Millisecond,
	Multiplier: 1.6,
	Jitter:     0.2,
	MaxDelay:   time.Second,
}

// Static flow-control windows. With gRPC's default dynamic windows the
// receiver sends a BDP ping on nearly every message when traffic is light
// (a PING frame and its ACK: two more writes and two more thread wake-ups
// per call, and a wake-up is the dearest thing on a small virtual machine).
// Internal peers are few and near, so windows larger than any burst cost
// only credit, not memory.
const (
	StreamWindow = 1 << 20
	ConnWindow   = 16 << 20
)

func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStaticStreamWindowSize(StreamWindow),
		grpc.WithStaticConnWindowSize(ConnWindow),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 5 * time.Second}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnectBackoff, MinConnectTimeout: 2 * time.Second}),
	}
}

// ServerOptions are the options every internal gRPC server uses.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(16 << 20),
		grpc.StaticStreamWindowSize(StreamWindow),
		grpc.StaticConnWindowSize(ConnWindow),
	}
}

// DialService returns a connection balanced round-robin over the instances
// w knows, following changes. Until w has known one, calls fail fast with
// Unavailable rather than hang (callers still set deadlines).
//
// Once it had instances, an update that would leave none keeps the last
// ones: an empty set is far more often a registration gap (etcd restarted
// and expired the old leases before their holders re-registered) than
// every instance gone, and a call to a dead address fails as fast as one
// to no address.
func DialService(w *discovery.Watcher) (*grpc.ClientConn, error) {
	r := manual.NewBuilderWithScheme("pushgw")
	var (
		mu  sync.Mutex
		had bool
	)
	update := func(set []discovery.Instance) {
		addrs := make([]resolver.Address, 0, len(set))
		for _, in := range set {
			if in.Addr != "" && !in.Draining {
				addrs = append(addrs, resolver.Address{Addr: in.Addr})
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(set) == 0 && had {
			return
		}
		had = had || len(addrs) > 0
		r.UpdateState(resolver.State{Addresses: addrs})
	}
	r.InitialState(resolver.State{})
	opts := append(dialOptions(),
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	cc, err := grpc.NewClient("pushgw:///service", opts...)
	if err != nil {
		return nil, fmt.Errorf("grpcconn: dial service: %w", err)
	}
	cc.Connect()
	w.OnChange(update)
	return cc, nil
}

// Pool keeps one connection per address (center → each room).
type Pool struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{conns: map[string]*grpc.ClientConn{}} }

// Get returns the connection to addr, dialing it on first use.
func (p *Pool) Get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("grpcconn: dial %s: %w", addr, err)
	}
	p.conns[addr] = cc
	return cc, nil
}

// Retain closes connections to addresses not in keep (instances gone).
func (p *Pool) Retain(keep map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, cc := range p.conns {
		if !keep[addr] {
			cc.Close()
			delete(p.conns, addr)
		}
	}
}

// Close closes every connection.
func (p *Pool) Close() {
	p.Retain(nil)
}

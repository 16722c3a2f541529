package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// peerReadyWait is how long start-up waits for the first listing of peers;
// a room starts anyway (calls fail fast until peers appear).
const peerReadyWait = 2 * time.Second

// peers are the room's connections to register, saver and coordinator,
// each balanced over the instances discovery knows.
type peers struct {
	watchers []*discovery.Watcher
	conns    []*grpc.ClientConn

	register    internalpb.RegisterClient
	saver       internalpb.SaverClient
	events      internalpb.SaverEventsClient
	coordinator internalpb.CoordinatorClient
}

func dialPeers(ctx context.Context, cli *clientv3.Client, cluster string, log *slog.Logger) (*peers, error) {
	p := &peers{}
	dial := func(svc string) (*grpc.ClientConn, error) {
		w := discovery.Watch(cli, cluster, svc, log)
		p.watchers = append(p.watchers, w)
		wctx, cancel := context.WithTimeout(ctx, peerReadyWait)
		_ = w.WaitReady(wctx)
		cancel()
		cc, err := grpcconn.DialService(w)
		if err != nil {
			return nil, fmt.Errorf("room: dial %s: %w", svc, err)
		}
		p.conns = append(p.conns, cc)
		return cc, nil
	}
	cc, err := dial(discovery.ServiceRegister)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.register = internalpb.NewRegisterClient(cc)
	if cc, err = dial(discovery.ServiceSaver); err != nil {
		p.Close()
		return nil, err
	}
	p.saver = internalpb.NewSaverClient(cc)
	p.events = internalpb.NewSaverEventsClient(cc)
	if cc, err = dial(discovery.ServiceCoordinator); err != nil {
		p.Close()
		return nil, err
	}
	p.coordinator = internalpb.NewCoordinatorClient(cc)
	return p, nil
}

func (p *peers) Close() {
	for _, w := range p.watchers {
		w.Close()
	}
	for _, cc := range p.conns {
		cc.Close()
	}
}

package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Registration keeps one instance key alive in etcd. If the lease is lost
// (etcd down longer than the TTL) it re-registers when etcd is back.
type Registration struct {
	cli *clientv3.Client
	key string
	ttl time.Duration
	log *slog.Logger

	mu   sync.Mutex
	inst Instance

	dirty  chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// Register publishes inst and keeps it alive until Close. The first put must
// succeed within ctx.
func Register(ctx context.Context, cli *clientv3.Client, cluster string, inst Instance, ttl time.Duration, log *slog.Logger) (*Registration, error) {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	if inst.Started.IsZero() {
		inst.Started = time.Now().UTC()
	}
	r := &Registration{
		cli: cli, key: Key(cluster, inst.Service, inst.ID), ttl: ttl, log: log, inst: inst,
		dirty: make(chan struct{}, 1), done: make(chan struct{}),
	}
	lease, err := r.put(ctx, 0)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.run(runCtx, lease)
	return r, nil
}

// Update changes the published instance (load, draining); it is written to
// etcd in the background.
func (r *Registration) Update(f func(*Instance)) {
	r.mu.Lock()
	f(&r.inst)
	r.mu.Unlock()
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// Instance returns the current published value.
func (r *Registration) Instance() Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inst
}

// put writes the instance under lease, granting a new lease when lease is 0.
func (r *Registration) put(ctx context.Context, lease clientv3.LeaseID) (clientv3.LeaseID, error) {
	if lease == 0 {
		g, err := r.cli.Grant(ctx, int64(r.ttl/time.Second))
		if err != nil {
			return 0, fmt.Errorf("discovery: grant lease for %s: %w", r.key, err)
		}
		lease = g.ID
	}
	r.mu.Lock()
	val, _ := json.Marshal(r.inst)
	r.mu.Unlock()
	if _, err := r.cli.Put(ctx, r.key, string(val), clientv3.WithLease(lease)); err != nil {
		return 0, fmt.Errorf("discovery: register %s: %w", r.key, err)
	}
	return lease, nil
}

func (r *Registration) run(ctx context.Context, lease clientv3.LeaseID) {
	defer close(r.done)
	wait := retryMin
	for {
		kaCtx, kaCancel := context.WithCancel(ctx)
		ch, err := r.cli.KeepAlive(kaCtx, lease)
		if err == nil {
			wait = retryMin
			alive := true
			for alive {
				select {
				case _, ok := <-ch:
					alive = ok
				case <-r.dirty:
					pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					if _, err := r.put(pctx, lease); err != nil && ctx.Err() == nil {
						r.log.Warn("discovery: update failed", "key", r.key, "err", err)
					}
					cancel()
				}
			}
		}
		kaCancel()
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("discovery: lease lost; re-registering", "key", r.key)
		for {
			if !sleepCtx(ctx, wait) {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, reregisterEvery)
			l, err := r.put(pctx, 0)
			cancel()
			if err == nil {
				lease = l
				r.log.Info("discovery: re-registered", "key", r.key)
				break
			}
			wait = min(backoff(wait), reregisterEvery)
		}
	}
}

// Close stops keepalives and deletes the key, so peers see the instance go
// at once rather than after the TTL.
func (r *Registration) Close(ctx context.Context) error {
	r.cancel()
	<-r.done
	_, err := r.cli.Delete(ctx, r.key)
	if err != nil {
		return fmt.Errorf("discovery: deregister %s: %w", r.key, err)
	}
	return nil
}

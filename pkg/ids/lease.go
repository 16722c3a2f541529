package ids

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseTTL is how long a node id outlives its holder after a crash.
const leaseTTL = 10 // seconds

// NodeLease holds one node id in etcd under
// /pushgw/<cluster>/ids/nodes/<n> for as long as the process lives, and
// re-claims one if the lease is lost (etcd outage longer than the TTL).
type NodeLease struct {
	cli    *clientv3.Client
	prefix string
	gen    *Generator
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// Acquire claims a free node id and returns a generator bound to it.
func Acquire(ctx context.Context, cli *clientv3.Client, cluster string, log *slog.Logger) (*NodeLease, *Generator, error) {
	l := &NodeLease{cli: cli, prefix: "/pushgw/" + cluster + "/ids/nodes/", log: log, done: make(chan struct{})}
	node, lease, err := l.claim(ctx, -1)
	if err != nil {
		return nil, nil, err
	}
	gen, _ := NewGenerator(node)
	l.gen = gen
	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.keep(runCtx, node, lease)
	return l, gen, nil
}

// claim grabs prefer if free, else the lowest free node id.
func (l *NodeLease) claim(ctx context.Context, prefer int) (int, clientv3.LeaseID, error) {
	grant, err := l.cli.Grant(ctx, leaseTTL)
	if err != nil {
		return 0, 0, fmt.Errorf("ids: grant lease: %w", err)
	}
	try := func(n int) (bool, error) {
		key := l.prefix + strconv.Itoa(n)
		resp, err := l.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, time.Now().UTC().Format(time.RFC3339), clientv3.WithLease(grant.ID))).
			Commit()
		if err != nil {
			return false, fmt.Errorf("ids: claim node %d: %w", n, err)
		}
		return resp.Succeeded, nil
	}
	if prefer >= 0 {
		if ok, err := try(prefer); err != nil {
			return 0, 0, err
		} else if ok {
			return prefer, grant.ID, nil
		}
	}
	for n := 0; n <= MaxNode; n++ {
		ok, err := try(n)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			return n, grant.ID, nil
		}
	}
	return 0, 0, fmt.Errorf("ids: all %d node ids are taken", MaxNode+1)
}

func (l *NodeLease) keep(ctx context.Context, node int, lease clientv3.LeaseID) {
	defer close(l.done)
	for {
		ch, err := l.cli.KeepAlive(ctx, lease)
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			revokeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = l.cli.Revoke(revokeCtx, lease)
			cancel()
			return
		}
		// Lease lost: keep issuing with the old node id (nobody can claim
		// it while etcd is unreachable) and re-claim as soon as possible.
		l.log.Warn("ids: node lease lost; re-claiming", "node", node)
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			n, id, err := l.claim(cctx, node)
			cancel()
			if err == nil {
				if n != node {
					l.log.Warn("ids: node id changed", "old", node, "new", n)
					l.gen.SetNode(n)
				}
				node, lease = n, id
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// Close releases the node id.
func (l *NodeLease) Close() {
	l.cancel()
	<-l.done
}

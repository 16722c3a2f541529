package ids

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseTTL is how long, in seconds, a node id outlives its holder after a
// crash. A variable so tests can shorten outages.
var leaseTTL int64 = 10

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
	node, lease, err := l.claim(ctx, -1, 0)
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

// claim grabs prefer if free or still held by our own prev lease, else the
// lowest free node id.
func (l *NodeLease) claim(ctx context.Context, prefer int, prev clientv3.LeaseID) (int, clientv3.LeaseID, error) {
	grant, err := l.cli.Grant(ctx, leaseTTL)
	if err != nil {
		return 0, 0, fmt.Errorf("ids: grant lease: %w", err)
	}
	try := func(n int, cond clientv3.Cmp) (bool, error) {
		resp, err := l.cli.Txn(ctx).
			If(cond).
			Then(clientv3.OpPut(l.prefix+strconv.Itoa(n), time.Now().UTC().Format(time.RFC3339), clientv3.WithLease(grant.ID))).
			Commit()
		if err != nil {
			return false, fmt.Errorf("ids: claim node %d: %w", n, err)
		}
		return resp.Succeeded, nil
	}
	free := func(n int) clientv3.Cmp {
		return clientv3.Compare(clientv3.CreateRevision(l.prefix+strconv.Itoa(n)), "=", 0)
	}
	if prefer >= 0 {
		ok, err := try(prefer, free(prefer))
		if err == nil && !ok && prev != 0 {
			// etcd restores leases on restart and refreshes their TTL, so
			// after an outage our node may still be held by the lease we
			// gave up on. It is ours: move it to the new lease rather than
			// switch node ids.
			ok, err = try(prefer, clientv3.Compare(clientv3.LeaseValue(l.prefix+strconv.Itoa(prefer)), "=", prev))
		}
		if err != nil {
			return 0, 0, err
		}
		if ok {
			return prefer, grant.ID, nil
		}
	}
	for n := 0; n <= MaxNode; n++ {
		ok, err := try(n, free(n))
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
			n, id, err := l.claim(cctx, node, lease)
			cancel()
			if err == nil {
				if n != node {
					l.log.Warn("ids: node id changed", "old", node, "new", n)
					l.gen.SetNode(n)
				}
				// Drop the restored old lease now rather than at its TTL;
				// the node key no longer hangs on it.
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				_, _ = l.cli.Revoke(rctx, lease)
				rcancel()
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

package ids

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/internal/etcdtest"
)

// testLeaseTTL keeps outage tests short; the shared-etcd tests do not
// depend on the TTL.
const testLeaseTTL = 2

func TestMain(m *testing.M) {
	leaseTTL = testLeaseTTL
	os.Exit(m.Run())
}

// sharedEtcd is the etcd that scripts/deps.sh starts (PUSHGW_ETCD).
func sharedEtcd() string {
	if v := os.Getenv("PUSHGW_ETCD"); v != "" {
		return v
	}
	return "127.0.0.1:2379"
}

func dial(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func nodeKey(cluster string, n int) string {
	return "/pushgw/" + cluster + "/ids/nodes/" + strconv.Itoa(n)
}

func nodeLease(ctx context.Context, t *testing.T, cli *clientv3.Client, cluster string, n int) clientv3.LeaseID {
	t.Helper()
	gctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := cli.Get(gctx, nodeKey(cluster, n))
	if err != nil || len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// TestAcquireDistinctNodes proves two processes racing for a node id get
// different ones, their ids never collide, and Close frees the node.
func TestAcquireDistinctNodes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cluster := fmt.Sprintf("ids-test-%d", time.Now().UnixNano())
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	cli := dial(t, sharedEtcd())
	defer cli.Delete(context.Background(), "/pushgw/"+cluster+"/", clientv3.WithPrefix())

	var leases [2]*NodeLease
	var gens [2]*Generator
	var errs [2]error
	var wg sync.WaitGroup
	for i := range 2 {
		// A client each, as two processes would have.
		c := dial(t, sharedEtcd())
		wg.Go(func() { leases[i], gens[i], errs[i] = Acquire(ctx, c, cluster, log) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Acquire %d: %v", i, err)
		}
	}
	defer leases[1].Close()
	a, b := gens[0].Node(), gens[1].Node()
	if a == b {
		t.Fatalf("both Acquire calls got node %d", a)
	}
	for _, n := range []int{a, b} {
		if n > 1 {
			t.Fatalf("node %d: want the lowest free nodes 0 and 1", n)
		}
		if nodeLease(ctx, t, cli, cluster, n) == 0 {
			t.Fatalf("node %d has no leased key", n)
		}
	}

	const perGen = 50000
	var out [2][]uint64
	for i := range 2 {
		wg.Go(func() {
			ids := make([]uint64, 0, perGen)
			for range perGen {
				id, err := gens[i].Next()
				if err != nil {
					t.Error(err)
					return
				}
				ids = append(ids, id)
			}
			out[i] = ids
		})
	}
	wg.Wait()
	seen := make(map[uint64]struct{}, 2*perGen)
	for i := range 2 {
		for _, id := range out[i] {
			if _, dup := seen[id]; dup {
				t.Fatalf("id %d issued twice", id)
			}
			seen[id] = struct{}{}
		}
	}
	if len(seen) != 2*perGen {
		t.Fatalf("%d distinct ids, want %d", len(seen), 2*perGen)
	}

	leases[0].Close()
	if nodeLease(ctx, t, cli, cluster, a) != 0 {
		t.Fatalf("node %d still held after Close", a)
	}
	l, g, err := Acquire(ctx, cli, cluster, log)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if g.Node() != a {
		t.Fatalf("after Close got node %d, want the freed node %d", g.Node(), a)
	}
}

// TestNodeReclaimedAfterOutage proves that after etcd was gone longer than
// the lease TTL the node id is claimed again under a fresh lease, is the
// same node (nobody else took it), and ids keep flowing throughout.
func TestNodeReclaimedAfterOutage(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	cli := dial(t, srv.Endpoint())
	const cluster = "outage"
	l, gen, err := Acquire(ctx, cli, cluster, log)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	node := gen.Node()
	oldLease := nodeLease(ctx, t, cli, cluster, node)

	srv.Kill()
	time.Sleep(testLeaseTTL*time.Second + 1500*time.Millisecond)
	// Ids keep coming with the old node while etcd is away.
	before, err := gen.Next()
	if err != nil || NodeOf(before) != node {
		t.Fatalf("during outage: id %d (node %d), err %v; want node %d", before, NodeOf(before), err, node)
	}

	srv.Restart()
	restarted := time.Now()
	var newLease clientv3.LeaseID
	deadline := time.Now().Add(10 * time.Second)
	for {
		newLease = nodeLease(ctx, t, cli, cluster, node)
		if newLease != 0 && newLease != oldLease {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d not re-claimed within 10s of restart (lease %x, old %x, generator on node %d)",
				node, newLease, oldLease, gen.Node())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("node re-claimed %v after restart", time.Since(restarted).Round(time.Millisecond))
	if gen.Node() != node {
		t.Fatalf("generator moved to node %d, want %d", gen.Node(), node)
	}
	// The restored pre-outage lease must end (revoked, or expired one TTL
	// after the restart) without taking the node key with it.
	for {
		ttl, err := cli.TimeToLive(ctx, oldLease)
		if err == nil && ttl.TTL == -1 {
			break
		}
		if time.Since(restarted) > 10*time.Second {
			t.Fatalf("pre-outage lease %x still alive 10s after restart", oldLease)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := nodeLease(ctx, t, cli, cluster, node); l != newLease {
		t.Fatalf("node key lease %x after old lease expiry, want %x", l, newLease)
	}
	resp, err := cli.Get(ctx, "/pushgw/"+cluster+"/ids/nodes/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1 {
		t.Fatalf("want exactly one node key, got %d (err %v)", resp.Count, err)
	}
	after, err := gen.Next()
	if err != nil || after <= before {
		t.Fatalf("after outage: id %d not above %d (err %v)", after, before, err)
	}
}

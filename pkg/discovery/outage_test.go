package discovery

import (
	"context"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/internal/etcdtest"
)

// outageTTL is short so an outage longer than the lease fits in a test.
const outageTTL = 2 * time.Second

// TestSurvivesEtcdOutage proves that when etcd is gone for longer than the
// lease TTL, the watcher keeps serving the peers it knew, and that once etcd
// is back the instance is registered again under a new lease (not merely
// kept alive by etcd restoring the old one) and updates flow again.
func TestSurvivesEtcdOutage(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cli, err := Connect(ctx, []string{srv.Endpoint()}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	const cluster = "outage"
	key := Key(cluster, ServiceRoom, "r1")

	w := Watch(cli, cluster, ServiceRoom, log)
	defer w.Close()
	if err := w.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	reg, err := Register(ctx, cli, cluster, Instance{Service: ServiceRoom, ID: "r1", Addr: "127.0.0.1:1"}, outageTTL, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeReg(reg)
	waitFor(t, func() bool { _, ok := w.Get("r1"); return ok })
	oldLease := leaseOf(ctx, t, cli, key)
	if oldLease == 0 {
		t.Fatal("instance key has no lease")
	}

	srv.Kill()
	// Long enough for the client to give the lease up (its keepalive
	// deadline is one TTL after the last answer).
	time.Sleep(outageTTL + 1500*time.Millisecond)
	if got := w.Instances(); len(got) != 1 || got[0].ID != "r1" {
		t.Fatalf("during outage watcher has %+v, want the last known r1", got)
	}

	srv.Restart()
	restarted := time.Now()
	// etcd restores persisted leases on restart and refreshes their TTL, so
	// the key being present proves nothing; a different lease proves the
	// Registration noticed the loss and registered again.
	var newLease clientv3.LeaseID
	waitFor(t, func() bool {
		newLease = leaseOf(ctx, t, cli, key)
		return newLease != 0 && newLease != oldLease
	})
	t.Logf("re-registered %v after restart", time.Since(restarted).Round(time.Millisecond))
	// Once the restored old lease has expired the key must still be there,
	// held by the new lease that the Registration keeps alive.
	waitFor(t, func() bool {
		ttl, err := cli.TimeToLive(ctx, oldLease)
		return err == nil && ttl.TTL == -1
	})
	if l := leaseOf(ctx, t, cli, key); l != newLease {
		t.Fatalf("after old lease expired: key lease %x, want %x", l, newLease)
	}
	if _, ok := w.Get("r1"); !ok {
		t.Fatal("watcher lost r1 after the old lease expired")
	}

	reg.Update(func(in *Instance) { in.Load = 7 })
	waitFor(t, func() bool { in, _ := w.Get("r1"); return in.Load == 7 })
	// A peer that appears after the outage is seen too.
	reg2, err := Register(ctx, cli, cluster, Instance{Service: ServiceRoom, ID: "r2"}, outageTTL, log)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := w.Get("r2"); return ok })
	if err := reg2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := w.Get("r2"); return !ok })
}

// TestShortOutageKeepsLease documents the other side: an outage shorter than
// the TTL needs no re-registration, the old lease simply resumes.
func TestShortOutageKeepsLease(t *testing.T) {
	// Room for a kill, a restart and gRPC's reconnect backoff.
	const shortTTL = 5 * time.Second
	t.Parallel()
	srv := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := Connect(ctx, []string{srv.Endpoint()}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	key := Key("short", ServiceSaver, "s1")
	reg, err := Register(ctx, cli, "short", Instance{Service: ServiceSaver, ID: "s1"}, shortTTL, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeReg(reg)
	lease := leaseOf(ctx, t, cli, key)

	srv.Kill()
	srv.Restart()
	// Past the TTL after the restart, the key must still be there: the
	// keepalive resumed on the old lease.
	time.Sleep(shortTTL + 500*time.Millisecond)
	if l := leaseOf(ctx, t, cli, key); l != lease {
		t.Fatalf("key lease %x after short outage, want the original %x", l, lease)
	}
}

func leaseOf(ctx context.Context, t *testing.T, cli *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	gctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := cli.Get(gctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// closeReg bounds Close, which would otherwise wait forever on an etcd that
// a failed test left down.
func closeReg(r *Registration) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = r.Close(ctx)
}

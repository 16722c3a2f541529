package main

import (
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// clusterUsers is enough users that their inboxes land on every master.
const clusterUsers = 24

// TestInboxOnRedisCluster runs store, pending (fill's MULTI/EXEC), the
// trusted-inbox read and ack against a 3-master Redis Cluster, for users
// spread over every master: the hash tag keeps each user's ZSET and HASH in
// one slot, so the inbox is filled, trusted and emptied as on one server.
func TestInboxOnRedisCluster(t *testing.T) {
	rc := redistest.StartCluster(t)
	f := newFixtureOn(t, 10, rc.Addrs())
	ctx := callCtx(t)
	cc := rc.Client()

	masters := map[string]bool{}
	var msgs []*internalpb.Message
	for i := 0; i < clusterUsers; i++ {
		user := "u" + strconv.Itoa(i)
		zs, err := cc.ClusterKeySlot(ctx, inboxKey("app1", user)).Result()
		if err != nil {
			t.Fatal(err)
		}
		hs, err := cc.ClusterKeySlot(ctx, bodyKey("app1", user)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if zs != hs {
			t.Fatalf("user %s: inbox slot %d, body slot %d; want one slot", user, zs, hs)
		}
		n, err := cc.MasterForKey(ctx, inboxKey("app1", user))
		if err != nil {
			t.Fatal(err)
		}
		masters[n.Options().Addr] = true
		msgs = append(msgs, msg("app1", user, "", 0))
	}
	if len(masters) != redistest.ClusterMasters {
		t.Fatalf("inboxes on %d masters, want all %d", len(masters), redistest.ClusterMasters)
	}

	f.store(t, msgs...) // one pipeline over every slot
	for _, m := range msgs {
		if idx, body := f.inInbox(t, m); !idx || !body {
			t.Fatalf("message %d of %s not in the cluster inbox after Store", m.GetId(), m.GetUser())
		}
	}
	for _, m := range msgs {
		if got := f.pending(t, "app1", m.GetUser(), "d"); !slices.Equal(ids(got), []uint64{m.GetId()}) {
			t.Fatalf("first pending of %s = %v", m.GetUser(), ids(got))
		}
	}
	if n := counterValue(f.srv.metrics.pendingFallback); n != clusterUsers {
		t.Fatalf("fallbacks after first reads = %v, want %d (one fill per user)", n, clusterUsers)
	}
	for _, m := range msgs {
		if got := f.pending(t, "app1", m.GetUser(), "d"); !slices.Equal(ids(got), []uint64{m.GetId()}) {
			t.Fatalf("second pending of %s = %v", m.GetUser(), ids(got))
		}
	}
	if n := counterValue(f.srv.metrics.pendingFallback); n != clusterUsers {
		t.Fatalf("second reads fell back to MySQL (fallbacks %v): fill's marker was not trusted", n)
	}
	if n := counterVecSum(f.srv.metrics.redisErrors); n != 0 {
		t.Fatalf("%v Redis errors on a healthy cluster", n)
	}

	f.ack(t, msgs...) // one pipeline over every slot
	for _, m := range msgs {
		if idx, body := f.inInbox(t, m); idx || body {
			t.Fatalf("acked %d of %s still in the cluster", m.GetId(), m.GetUser())
		}
	}

	// PendingBatch's probe and mark scripts (inbox_marker.go) run per slot:
	// new users over every master are checked with one MySQL read and
	// marked, and their next batch is answered by Redis alone.
	if ls, err := cc.ClusterKeySlot(ctx, inboxLeaseKey("app1", "u0")).Result(); err != nil || ls != cc.ClusterKeySlot(ctx, inboxKey("app1", "u0")).Val() {
		t.Fatalf("lease key slot %d (%v) differs from the inbox's", ls, err)
	}
	var reqs []*internalpb.PendingRequest
	for i := 0; i < clusterUsers; i++ {
		reqs = append(reqs, preq("app1", "new"+strconv.Itoa(i)))
	}
	f.pendingBatch(t, reqs...)
	f.pendingBatch(t, reqs...)
	if e, r := batchCount(f, batchMySQLEmpty), batchCount(f, batchRedisEmpty); e != clusterUsers || r != clusterUsers {
		t.Fatalf("cluster batches: %v found empty by MySQL, %v by Redis; want %d each", e, r, clusterUsers)
	}
	if n := counterVecSum(f.srv.metrics.redisErrors); n != 0 {
		t.Fatalf("%v Redis errors on a healthy cluster", n)
	}
}

// counterVecSum adds every series of v.
func counterVecSum(v *prometheus.CounterVec) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { v.Collect(ch); close(ch) }()
	sum := 0.0
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err == nil {
			sum += d.GetCounter().GetValue()
		}
	}
	return sum
}

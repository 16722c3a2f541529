package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// clusterUsers is enough users that their keys land on every master.
const clusterUsers = 24

// TestSessionsOnRedisCluster runs put, lookup, refresh and delete batches
// over a 3-master Redis Cluster, then kills and restarts the master of one
// user: that master comes back empty and without the scripts, the batch
// reloads them (NOSCRIPT), reports only its users missing, and the re-put
// sessions are found again.
func TestSessionsOnRedisCluster(t *testing.T) {
	rc := redistest.StartCluster(t)
	f := newFixtureOn(t, time.Minute, rc.Addrs())
	cc := rc.Client()
	ctx := callCtx(t)

	var all []*internalpb.Session
	var keys []*internalpb.UserKey
	byMaster := map[string][]string{} // master addr -> users
	for i := 0; i < clusterUsers; i++ {
		user := "u" + strconv.Itoa(i)
		all = append(all, sess("app1", user, "phone", "room-a", uint64(i+1)))
		keys = append(keys, &internalpb.UserKey{App: "app1", User: user})
		n, err := cc.MasterForKey(ctx, userKey("app1", user))
		if err != nil {
			t.Fatal(err)
		}
		byMaster[n.Options().Addr] = append(byMaster[n.Options().Addr], user)
	}
	if len(byMaster) != redistest.ClusterMasters {
		t.Fatalf("sessions on %d masters, want all %d", len(byMaster), redistest.ClusterMasters)
	}
	if _, err := f.cli.Put(ctx, &internalpb.PutSessionsRequest{Sessions: all}); err != nil {
		t.Fatal(err)
	}
	r, err := f.cli.Lookup(ctx, &internalpb.LookupSessionsRequest{Users: keys})
	if err != nil || len(r.GetSessions()) != clusterUsers {
		t.Fatalf("lookup of %d users on the cluster: %d sessions, %v", clusterUsers, len(r.GetSessions()), err)
	}

	victim := rc.Nodes[0]
	lost := map[string]bool{}
	for _, u := range byMaster[victim.Addr()] {
		lost[u] = true
	}
	victim.Kill()
	victim.Restart()
	rc.WaitOK()

	rr, err := f.cli.Refresh(callCtx(t), &internalpb.RefreshSessionsRequest{Sessions: all})
	if err != nil {
		t.Fatalf("refresh after a master restart: %v", err)
	}
	if len(rr.GetMissing()) != len(lost) {
		t.Fatalf("missing after restart of %s: %d sessions, want its %d users", victim.Addr(), len(rr.GetMissing()), len(lost))
	}
	for _, s := range rr.GetMissing() {
		if !lost[s.GetUser()] {
			t.Fatalf("%s reported missing but its master %s was not restarted", s.GetUser(), victim.Addr())
		}
	}
	if _, err := f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: rr.GetMissing()}); err != nil {
		t.Fatal(err)
	}
	r, err = f.cli.Lookup(callCtx(t), &internalpb.LookupSessionsRequest{Users: keys})
	if err != nil || len(r.GetSessions()) != clusterUsers {
		t.Fatalf("lookup after re-put: %d sessions, %v", len(r.GetSessions()), err)
	}

	if _, err := f.cli.Delete(callCtx(t), &internalpb.DeleteSessionsRequest{Sessions: all}); err != nil {
		t.Fatalf("delete on the cluster: %v", err)
	}
	for _, k := range keys {
		if n := cc.Exists(callCtx(t), userKey(k.GetApp(), k.GetUser())).Val(); n != 0 {
			t.Fatalf("%s still has a session key after delete", k.GetUser())
		}
	}
}

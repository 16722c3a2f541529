package etcdtest

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestClusterSurvivesOneMember proves what the etcd cluster tests rely on: a
// client given every endpoint keeps writing with one member stopped, cannot
// write once the quorum is gone, and reads the data again when it is back.
func TestClusterSurvivesOneMember(t *testing.T) {
	c := StartCluster(t, 3)
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(c.Endpoints(), ","), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	c.Members[0].Stop()
	if _, err := cli.Put(ctx, "k", "v2"); err != nil {
		t.Fatalf("put with one of three members stopped: %v", err)
	}
	c.Members[1].Stop()
	short, scancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = cli.Put(short, "k", "v3")
	scancel()
	if err == nil {
		t.Fatal("put succeeded without a quorum")
	}
	c.Members[0].Restart()
	c.Members[1].Restart()
	c.WaitHealthy()
	// The put that timed out without a quorum was still proposed: it may
	// commit once the quorum is back, so either value is right.
	resp, err := cli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || (string(resp.Kvs[0].Value) != "v2" && string(resp.Kvs[0].Value) != "v3") {
		t.Fatalf("after the quorum came back: %v, %v; want k=v2 (or v3)", resp, err)
	}
	if _, err := cli.Put(ctx, "k", "v4"); err != nil {
		t.Fatalf("put after the quorum came back: %v", err)
	}
}

package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestKillRestartKeepsData proves Restart brings back the same member on the
// same address with its data, which the outage tests of other packages rely on.
func TestKillRestartKeepsData(t *testing.T) {
	s := Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	short, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = cli.Get(short, "k")
	scancel()
	if err == nil {
		t.Fatal("Get succeeded while etcd was killed")
	}
	s.Restart()
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart got %v, want k=v", resp.Kvs)
	}
	s.Stop()
	s.Restart()
	if _, err := cli.Get(ctx, "k"); err != nil {
		t.Fatalf("after stop+restart: %v", err)
	}
}

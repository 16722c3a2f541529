package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"
)

// These tests use the real etcd that scripts/deps.sh starts (PUSHGW_ETCD).
func etcdAddr() string {
	if v := os.Getenv("PUSHGW_ETCD"); v != "" {
		return v
	}
	return "127.0.0.1:2379"
}

func TestRegisterWatchDeregister(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli, err := Connect(ctx, []string{etcdAddr()}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cluster := fmt.Sprintf("disc-test-%d", time.Now().UnixNano())
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	w := Watch(cli, cluster, ServiceRoom, log)
	defer w.Close()
	if err := w.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	reg, err := Register(ctx, cli, cluster, Instance{Service: ServiceRoom, ID: "r1", Addr: "127.0.0.1:1"}, 2*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := w.Get("r1"); return ok })
	reg.Update(func(in *Instance) { in.Load = 42 })
	waitFor(t, func() bool { in, _ := w.Get("r1"); return in.Load == 42 })
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := w.Get("r1"); return !ok })
}

func TestConnectFailsFast(t *testing.T) {
	start := time.Now()
	_, err := Connect(context.Background(), []string{"127.0.0.1:1"}, time.Second)
	if err == nil {
		t.Fatal("want error for unreachable etcd")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("Connect took %v", time.Since(start))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("condition not met within 10s")
}

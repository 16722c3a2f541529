package grpcconn

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/pushgw/pushgw/pkg/discovery"
)

func etcdEndpoint() string {
	if v := os.Getenv("PUSHGW_TEST_ETCD"); v != "" {
		return v
	}
	return "127.0.0.1:2379"
}

// When the only instance's key disappears (etcd expired an old lease before
// the instance re-registered), calls keep going to the last address.
func TestDialServiceKeepsLastInstancesThroughAGap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{etcdEndpoint()}, 5*time.Second)
	if err != nil {
		t.Fatalf("etcd at %s: %v", etcdEndpoint(), err)
	}
	defer cli.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cluster := "grpcconn-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	reg, err := discovery.Register(ctx, cli, cluster, discovery.Instance{Service: discovery.ServiceSaver, ID: "s1", Addr: ln.Addr().String()}, 5*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	w := discovery.Watch(cli, cluster, discovery.ServiceSaver, log)
	defer w.Close()
	if err := w.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	cc, err := DialService(w)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	check := func() error {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		_, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("call with the instance registered: %v", err)
	}
	if err := reg.Close(ctx); err != nil { // deletes the key
		t.Fatal(err)
	}
	for len(w.Instances()) != 0 {
		if ctx.Err() != nil {
			t.Fatal("watcher still lists the instance")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := check(); err != nil {
		t.Fatalf("call after the key went: %v, want the last address kept", err)
	}
}

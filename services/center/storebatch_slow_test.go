package main

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pushgw/pushgw/internal/logbuf"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// holdingSaver answers Store after hold: a saver whose MySQL commit
// stalled (on this box, a virtual disk's fdatasync now and then takes
// 300–700 ms).
type holdingSaver struct {
	internalpb.UnimplementedSaverServer
	hold time.Duration
}

func (s *holdingSaver) Store(ctx context.Context, _ *internalpb.StoreRequest) (*internalpb.StoreReply, error) {
	select {
	case <-time.After(s.hold):
	case <-ctx.Done():
	}
	return &internalpb.StoreReply{}, nil
}

// TestSlowStoreBatchLogged: a Store call slower than slowStore is logged
// with where its time went; a fast one is not.
func TestSlowStoreBatchLogged(t *testing.T) {
	for _, tc := range []struct {
		hold   time.Duration
		logged bool
	}{{0, false}, {slowStore + 50*time.Millisecond, true}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		internalpb.RegisterSaverServer(gs, &holdingSaver{hold: tc.hold})
		go gs.Serve(ln)
		cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		var logs logbuf.Buffer
		b := newStoreBatcher(internalpb.NewSaverClient(cc), newStoreBatchMetrics(prometheus.NewRegistry()), slog.New(slog.NewJSONHandler(&logs, nil)))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out := b.submit(ctx, &internalpb.Message{Id: 1, App: "app1", User: "u1", Qos: 1, Payload: []byte("x")})
		cancel()
		if out.err != nil {
			t.Fatalf("hold %v: submit: %v", tc.hold, out.err)
		}
		// The flush logs before it answers, so the line is there by now.
		got := logs.String()
		if strings.Contains(got, `"msg":"center: slow store batch"`) != tc.logged {
			t.Errorf("hold %v: logged %q; want a slow-store line: %v", tc.hold, got, tc.logged)
		}
		if tc.logged && !strings.Contains(got, `"messages":1,`) {
			t.Errorf("slow-store line without the batch size: %q", got)
		}
		if err := b.close(context.Background()); err != nil {
			t.Fatal(err)
		}
		cc.Close()
		gs.Stop()
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// BenchmarkUnicastStore compares one Saver.Store per message (what center
// did per request before the store batcher) with the batcher, both with
// 64 concurrent callers against the real saver, in one run:
//
//	go test -run '^$' -bench UnicastStore -benchtime 3000x ./services/center
func BenchmarkUnicastStore(b *testing.B) {
	cluster := fmt.Sprintf("bench-center-%d", time.Now().UnixNano())
	_, _ = startRealSaver(b, cluster)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{"127.0.0.1:2379"}, 3*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := discovery.Watch(cli, cluster, discovery.ServiceSaver, log)
	defer w.Close()
	if err := w.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	conn, err := grpcconn.DialService(w)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	saver := internalpb.NewSaverClient(conn)
	var next atomic.Uint64
	next.Store(uint64(time.Now().UnixNano()))
	newMsg := func() *internalpb.Message {
		id := next.Add(1)
		return &internalpb.Message{Id: id, App: "bench", User: fmt.Sprint("u", id%100), Payload: make([]byte, 64), Qos: 1}
	}
	// Wait for discovery to reach the saver.
	for {
		if _, err := saver.Store(ctx, &internalpb.StoreRequest{Messages: []*internalpb.Message{newMsg()}}); err == nil {
			break
		}
		if ctx.Err() != nil {
			b.Fatal("saver never answered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	const callers = 64
	run := func(b *testing.B, store func(context.Context, *internalpb.Message) error) {
		b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				cctx, ccancel := context.WithTimeout(context.Background(), storeTimeout)
				err := store(cctx, newMsg())
				ccancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stores/s")
	}
	b.Run("direct", func(b *testing.B) {
		run(b, func(ctx context.Context, m *internalpb.Message) error {
			_, err := saver.Store(ctx, &internalpb.StoreRequest{Messages: []*internalpb.Message{m}})
			return err
		})
	})
	b.Run("batched", func(b *testing.B) {
		sb := newStoreBatcher(saver, newStoreBatchMetrics(prometheus.NewRegistry()), log)
		defer func() { _ = sb.close(context.Background()) }()
		run(b, func(ctx context.Context, m *internalpb.Message) error { return sb.submit(ctx, m).err })
	})
}

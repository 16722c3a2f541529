package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// reportRecorder is the Saver client seen by a reporter: it records each
// Report call and answers with err.
type reportRecorder struct {
	internalpb.SaverClient
	mu    sync.Mutex
	calls []*internalpb.ReportRequest
	err   error
}

func (c *reportRecorder) Report(ctx context.Context, req *internalpb.ReportRequest, _ ...grpc.CallOption) (*internalpb.ReportReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, req)
	return &internalpb.ReportReply{}, c.err
}

func (c *reportRecorder) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

// testReporter batches like the room's reporter, with a flush window long
// enough that everything added at once shares it on a loaded box.
func testReporter(t *testing.T, saver internalpb.SaverClient) *reporter {
	r := &room{log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry()), saver: saver, life: context.Background()}
	rp := &reporter{r: r}
	rp.b = newBatcher(defaultBatchSize, time.Second, defaultBatchQueue, rp.flush, nil)
	rp.hold = newDeliveryHold(deliveredHold, holdTick, maxHeldDeliveries, func(it reportItem) { rp.b.Add(it) }, func(int) {})
	t.Cleanup(func() { _ = rp.Close(context.Background()) })
	return rp
}

// The acks and deliveries of one flush window go to saver in one Report;
// an ack of id 0 (a client's mistake) is dropped instead of getting the
// whole window refused.
func TestReporterOneCallPerWindow(t *testing.T) {
	rec := &reportRecorder{}
	rp := testReporter(t, rec)
	const n = defaultBatchSize * 2 / 5 // acks and deliveries fill 4/5 of one batch
	for i := uint64(1); i <= n; i++ {
		rp.Delivered("app", "u", i)
		rp.Acked("app", "u", i)
		rp.Acked("app", "u", 0)
	}
	waitUntil(t, func() bool { return rp.flushes.Load() == 1 })
	if rec.count() != 1 {
		t.Fatalf("%d Report calls for one window, want 1", rec.count())
	}
	req := rec.calls[0]
	if len(req.GetAcked()) != n || len(req.GetDelivered()) != n {
		t.Fatalf("acked %d delivered %d, want %d each", len(req.GetAcked()), len(req.GetDelivered()), n)
	}
	for _, r := range req.GetAcked() {
		if r.GetId() == 0 {
			t.Fatal("an ack of id 0 reached saver")
		}
	}
}

// A window saver refuses as invalid is not retried: the same batch would
// be refused again, and the retries would hold the next windows back.
func TestReporterDoesNotRetryRefusedBatch(t *testing.T) {
	rec := &reportRecorder{err: status.Error(codes.InvalidArgument, "saver: bad ref")}
	rp := testReporter(t, rec)
	rp.Acked("app", "u", 1)
	waitUntil(t, func() bool { return rp.flushes.Load() == 1 })
	if rec.count() != 1 {
		t.Fatalf("%d Report calls for a refused window, want 1", rec.count())
	}
	rec.mu.Lock()
	rec.err = status.Error(codes.Unavailable, "saver restarting")
	rec.mu.Unlock()
	rp.Acked("app", "u", 2)
	waitUntil(t, func() bool { return rec.count() >= 3 })
	rec.mu.Lock()
	rec.err = nil
	rec.mu.Unlock()
	waitUntil(t, func() bool { return rp.flushes.Load() == 2 })
}

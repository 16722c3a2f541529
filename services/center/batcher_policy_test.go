package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// gatedDeliver records each flush's batch size and holds every flush
// until gate closes.
type gatedDeliver struct {
	gate chan struct{}
	mu   sync.Mutex
	got  []int
}

func (g *gatedDeliver) deliver(ctx context.Context, msgs []*internalpb.Message) (int, error) {
	g.mu.Lock()
	g.got = append(g.got, len(msgs))
	g.mu.Unlock()
	select {
	case <-g.gate:
	case <-ctx.Done():
	}
	return len(msgs), nil
}

func (g *gatedDeliver) batches() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.got...)
}

// A message that finds no flush in flight leaves at once: with the wait
// for company set to an hour, a lone message still reaches deliver.
func TestDeliveryBatchLeavesAtOnceWhenIdle(t *testing.T) {
	g := &gatedDeliver{gate: make(chan struct{})}
	close(g.gate)
	b := newDeliveryBatcherWait(g.deliver, newMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)), time.Hour)
	t.Cleanup(func() { _ = b.close(context.Background()) })
	if left := b.enqueue(testMessages(1)); len(left) != 0 {
		t.Fatalf("%d messages refused", len(left))
	}
	waitFor(t, "the lone message to be flushed without waiting for company", func() bool { return len(g.batches()) == 1 })
}

// While every flusher is busy the queue grows, and the next flush takes
// all of it in one batch.
func TestDeliveryBatchGrowsWhileFlushersBusy(t *testing.T) {
	g := &gatedDeliver{gate: make(chan struct{})}
	b := newDeliveryBatcherWait(g.deliver, newMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)), time.Millisecond)
	t.Cleanup(func() { _ = b.close(context.Background()) })
	// Occupy every flusher, one message at a time.
	for i := range deliveryFlushers {
		b.enqueue(testMessages(1))
		waitFor(t, "a flusher to hold its message", func() bool { return len(g.batches()) == i+1 })
	}
	const queued = 50
	if left := b.enqueue(testMessages(queued)); len(left) != 0 {
		t.Fatalf("%d messages refused", len(left))
	}
	close(g.gate)
	waitFor(t, "the queued messages to be flushed", func() bool {
		n := 0
		for _, s := range g.batches() {
			n += s
		}
		return n == deliveryFlushers+queued
	})
	got := g.batches()
	if last := got[len(got)-1]; len(got) != deliveryFlushers+1 || last != queued {
		t.Fatalf("flushes %v; want %d single ones, then one of %d", got, deliveryFlushers, queued)
	}
}

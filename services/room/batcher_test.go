package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// collector records flushed batches.
type collector struct {
	mu      sync.Mutex
	batches [][]int
}

func (c *collector) flush(b []int) {
	c.mu.Lock()
	c.batches = append(c.batches, append([]int(nil), b...))
	c.mu.Unlock()
}

func (c *collector) snapshot() [][]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]int(nil), c.batches...)
}

func TestBatcherFlushesAtSize(t *testing.T) {
	var c collector
	b := newBatcher(500, time.Hour, 2000, c.flush, nil)
	for i := 0; i < 1200; i++ {
		if !b.Add(i) {
			t.Fatalf("Add(%d) shed", i)
		}
	}
	waitUntil(t, func() bool { return len(c.snapshot()) >= 2 })
	if got := c.snapshot(); len(got) != 2 || len(got[0]) != 500 || len(got[1]) != 500 {
		t.Fatalf("before Close: batch sizes %v, want [500 500]", sizes(got))
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := c.snapshot()
	if len(got) != 3 || len(got[2]) != 200 {
		t.Fatalf("after Close: batch sizes %v, want [500 500 200]", sizes(got))
	}
	next := 0
	for _, batch := range got {
		for _, v := range batch {
			if v != next {
				t.Fatalf("item %d out of order (want %d)", v, next)
			}
			next++
		}
	}
	if b.Add(1) {
		t.Fatal("Add after Close accepted")
	}
}

func TestBatcherFlushesAfterDelay(t *testing.T) {
	var c collector
	b := newBatcher(500, 5*time.Millisecond, 100, c.flush, nil)
	defer b.Close(context.Background())
	b.Add(1)
	b.Add(2)
	b.Add(3)
	// Three items never reach the size: only the delay flushes them.
	waitUntil(t, func() bool { return len(c.snapshot()) == 1 })
	if got := c.snapshot(); len(got[0]) != 3 || got[0][0] != 1 || got[0][2] != 3 {
		t.Fatalf("batch %v, want [1 2 3]", got[0])
	}
}

// TestBatcherEagerFlushesIdleAddAtOnce: an eager batcher (delay 0) that
// finds its flusher idle flushes a lone item without waiting for more,
// and the items that come while a flush is out leave together, in order,
// as soon as it returns. No timing: the flush is held on a channel.
func TestBatcherEagerFlushesIdleAddAtOnce(t *testing.T) {
	var c collector
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	b := newBatcher(500, 0, 100, func(batch []int) {
		entered <- struct{}{}
		<-release
		c.flush(batch)
	}, nil)
	defer b.Close(context.Background())
	b.Add(1)
	<-entered // flushed alone, nothing else ever came
	for i := 2; i <= 4; i++ {
		b.Add(i)
	}
	release <- struct{}{}
	<-entered // the three that came meanwhile, in one batch
	release <- struct{}{}
	waitUntil(t, func() bool { return len(c.snapshot()) == 2 })
	if got := c.snapshot(); len(got[0]) != 1 || got[0][0] != 1 || len(got[1]) != 3 || got[1][0] != 2 || got[1][2] != 4 {
		t.Fatalf("batches %v, want [[1] [2 3 4]]", got)
	}
	// And again from idle: one more lone item goes at once.
	b.Add(5)
	<-entered
	release <- struct{}{}
	waitUntil(t, func() bool { return len(c.snapshot()) == 3 })
	if got := c.snapshot(); len(got[2]) != 1 || got[2][0] != 5 {
		t.Fatalf("third batch %v, want [5]", got[2])
	}
}

// blockedBatcher returns a batcher of batch size 10 and bound queue whose
// flusher is stuck in flush with a full batch (items 0..9), and the
// channel that releases it.
func blockedBatcher(t *testing.T, queue int, flushed, dropped *atomic.Int64) (*batcher[int], chan struct{}) {
	t.Helper()
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	b := newBatcher(10, time.Hour, queue, func(batch []int) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		flushed.Add(int64(len(batch)))
	}, func() { dropped.Add(1) })
	for i := 0; i < 10; i++ {
		if !b.Add(i) {
			t.Fatalf("Add(%d) shed on an empty queue", i)
		}
	}
	<-entered
	return b, release
}

func TestBatcherShedsWhenFull(t *testing.T) {
	var flushed, dropped atomic.Int64
	b, release := blockedBatcher(t, 20, &flushed, &dropped)
	// The flusher holds 10 in its batch: exactly the bound of 20 more is
	// queued, and Add sheds the rest without blocking on the stuck flush.
	accepted := 0
	for i := 0; i < 1000; i++ {
		if b.Add(i) {
			accepted++
		}
	}
	if accepted != 20 || dropped.Load() != 980 || b.Len() != 20 {
		t.Fatalf("accepted %d, dropped %d, queued %d; want 20, 980, 20", accepted, dropped.Load(), b.Len())
	}
	close(release)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if flushed.Load() != 10+20 {
		t.Fatalf("flushed %d, want 30", flushed.Load())
	}
	if b.Add(1) || dropped.Load() != 981 {
		t.Fatalf("Add after Close accepted or not counted (dropped %d)", dropped.Load())
	}
}

func TestBatcherCloseDrainsInOrder(t *testing.T) {
	var c collector
	b := newBatcher(4, time.Hour, 100, c.flush, nil)
	for i := 0; i < 10; i++ {
		b.Add(i)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := c.snapshot()
	var all []int
	for _, batch := range got {
		if len(batch) > 4 {
			t.Fatalf("batch of %d over the size 4: %v", len(batch), sizes(got))
		}
		all = append(all, batch...)
	}
	if len(all) != 10 {
		t.Fatalf("flushed %v, want 0..9", all)
	}
	for i, v := range all {
		if v != i {
			t.Fatalf("flushed %v, want 0..9 in order", all)
		}
	}
}

// TestBatcherReleasesAfterBurst: a burst grows the queue far past the
// batch size; once it is flushed the queue lets its array go.
func TestBatcherReleasesAfterBurst(t *testing.T) {
	var flushed, dropped atomic.Int64
	const burst = 5000
	b, release := blockedBatcher(t, 2*burst, &flushed, &dropped)
	if c := b.ringCap(); c != batchQueueMinCap {
		t.Fatalf("queue capacity %d for the first batch, want %d", c, batchQueueMinCap)
	}
	for i := 0; i < burst; i++ {
		if !b.Add(i) {
			t.Fatalf("Add(%d) shed under the bound", i)
		}
	}
	if c := b.ringCap(); c < burst || c > 2*burst {
		t.Fatalf("queue capacity %d holding %d items", c, burst)
	}
	close(release)
	// The flusher lets the array go once it finds the queue empty.
	waitUntil(t, func() bool { return b.ringCap() == 0 })
	if flushed.Load() != 10+burst {
		t.Fatalf("flushed %d once the queue was released, want %d", flushed.Load(), 10+burst)
	}
	// A trickle after it keeps a small array.
	b.Add(1)
	if c := b.ringCap(); c != batchQueueMinCap {
		t.Fatalf("queue capacity %d for one item, want %d", c, batchQueueMinCap)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if dropped.Load() != 0 {
		t.Fatalf("dropped %d", dropped.Load())
	}
}

func TestBatcherCloseDeadline(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	b := newBatcher(1, time.Millisecond, 10, func([]int) { <-block }, nil)
	b.Add(1)
	b.Add(2)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want deadline exceeded", err)
	}
}

func TestRetry(t *testing.T) {
	calls := 0
	err := retry(3, time.Millisecond, nil, func() error {
		calls++
		if calls < 3 {
			return errors.New("down")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("retry = %v after %d calls, want success after 3", err, calls)
	}
	calls = 0
	err = retry(3, time.Millisecond, nil, func() error { calls++; return errors.New("down") })
	if err == nil || calls != 3 {
		t.Fatalf("retry = %v after %d calls, want error after 3", err, calls)
	}
	stop := make(chan struct{})
	close(stop)
	calls = 0
	_ = retry(5, time.Hour, stop, func() error { calls++; return errors.New("down") })
	if calls != 1 {
		t.Fatalf("retry ignored stop: %d calls", calls)
	}
}

func TestBuildReport(t *testing.T) {
	req := buildReport([]reportItem{
		{acked: true, app: "a", user: "u", id: 1},
		{app: "a", user: "u", id: 2},
		{acked: true, app: "b", user: "v", id: 3},
	})
	if len(req.Acked) != 2 || len(req.Delivered) != 1 {
		t.Fatalf("acked %d delivered %d", len(req.Acked), len(req.Delivered))
	}
	if req.Acked[1].GetApp() != "b" || req.Acked[1].GetId() != 3 || req.Delivered[0].GetId() != 2 {
		t.Fatalf("wrong refs: %v", req)
	}
}

func sizes(bs [][]int) []int {
	out := make([]int, len(bs))
	for i, b := range bs {
		out[i] = len(b)
	}
	return out
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

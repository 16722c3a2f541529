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
	start := time.Now()
	b.Add(1)
	b.Add(2)
	b.Add(3)
	waitUntil(t, func() bool { return len(c.snapshot()) == 1 })
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("flush took %v", took)
	}
	if got := c.snapshot(); len(got[0]) != 3 {
		t.Fatalf("batch %v, want 3 items", got[0])
	}
}

func TestBatcherShedsWhenFull(t *testing.T) {
	release := make(chan struct{})
	var flushed atomic.Int64
	var dropped atomic.Int64
	b := newBatcher(10, time.Millisecond, 20, func(batch []int) {
		<-release
		flushed.Add(int64(len(batch)))
	}, func() { dropped.Add(1) })
	accepted := 0
	start := time.Now()
	for i := 0; i < 1000; i++ {
		if b.Add(i) {
			accepted++
		}
	}
	if time.Since(start) > time.Second {
		t.Fatal("Add blocked on a stuck flush")
	}
	// At most one batch in the flusher plus the queue.
	if accepted > 10+20 || dropped.Load() != int64(1000-accepted) {
		t.Fatalf("accepted %d, dropped %d", accepted, dropped.Load())
	}
	close(release)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if flushed.Load() != int64(accepted) {
		t.Fatalf("flushed %d of %d accepted", flushed.Load(), accepted)
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

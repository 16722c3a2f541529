package main

import (
	"context"
	"time"
)

// Batching defaults for calls to register and saver: flush at this many
// items or this long after the first one, whichever comes first.
const (
	defaultBatchSize  = 500
	defaultBatchDelay = 5 * time.Millisecond
	// defaultBatchQueue bounds the items waiting for a flush; beyond it Add
	// sheds (every item it carries is recoverable: acks are redelivered,
	// sessions re-put by the refresh loop or expire by TTL).
	defaultBatchQueue = 64 << 10
)

// batcher collects items from many connections and hands them to flush in
// batches. One goroutine flushes, so batches leave in the order items came
// and a slow peer slows only the batcher, never the connections feeding it.
type batcher[T any] struct {
	in    chan T
	size  int
	delay time.Duration
	flush func([]T)
	// dropped is called when Add sheds an item (queue full or closed).
	dropped func()

	quit chan struct{}
	done chan struct{}
}

func newBatcher[T any](size int, delay time.Duration, queue int, flush func([]T), dropped func()) *batcher[T] {
	if dropped == nil {
		dropped = func() {}
	}
	b := &batcher[T]{
		in: make(chan T, queue), size: size, delay: delay, flush: flush, dropped: dropped,
		quit: make(chan struct{}), done: make(chan struct{}),
	}
	go b.run()
	return b
}

// Add queues v without blocking; it reports false when v was shed.
func (b *batcher[T]) Add(v T) bool {
	select {
	case <-b.quit:
		b.dropped()
		return false
	default:
	}
	select {
	case b.in <- v:
		return true
	default:
		b.dropped()
		return false
	}
}

func (b *batcher[T]) run() {
	defer close(b.done)
	batch := make([]T, 0, b.size)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case v := <-b.in:
			batch = append(batch[:0], v)
		case <-b.quit:
			b.drain(batch[:0])
			return
		}
		timer.Reset(b.delay)
	collect:
		for len(batch) < b.size {
			select {
			case v := <-b.in:
				batch = append(batch, v)
			case <-timer.C:
				break collect
			case <-b.quit:
				break collect
			}
		}
		timer.Stop()
		b.flush(batch)
		clear(batch)
	}
}

// drain flushes whatever is queued when the batcher closes.
func (b *batcher[T]) drain(batch []T) {
	for {
		select {
		case v := <-b.in:
			batch = append(batch, v)
			if len(batch) == b.size {
				b.flush(batch)
				batch = batch[:0]
			}
		default:
			if len(batch) > 0 {
				b.flush(batch)
			}
			return
		}
	}
}

// Close stops taking items, flushes what is queued, and waits for that up
// to ctx's deadline (flush functions put their own deadlines on calls).
func (b *batcher[T]) Close(ctx context.Context) error {
	close(b.quit)
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry calls f up to attempts times with doubling back-off from first,
// giving up early when stop closes.
func retry(attempts int, first time.Duration, stop <-chan struct{}, f func() error) error {
	var err error
	wait := first
	for i := 0; i < attempts; i++ {
		if err = f(); err == nil {
			return nil
		}
		if i == attempts-1 {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return err
		}
		wait *= 2
	}
	return err
}

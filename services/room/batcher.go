package main

import (
	"context"
	"sync"
	"time"
)

// Batching defaults for calls to register and saver: flush at this many
// items or this long after the first one, whichever comes first. A
// batcher made with delay 0 gathers nothing on purpose (see batcher).
const (
	defaultBatchSize  = 500
	defaultBatchDelay = 5 * time.Millisecond
	// defaultBatchQueue bounds the items waiting for a flush; beyond it Add
	// sheds (every item it carries is recoverable: acks are redelivered,
	// sessions re-put by the refresh loop or expire by TTL).
	defaultBatchQueue = 64 << 10
)

// Growth and release of a batcher's queue.
const (
	// batchQueueMinCap is the first array a queue allocates: small, so an
	// idle batcher costs next to nothing.
	batchQueueMinCap = 64
	// batchQueueKeepBatches: a queue that empties while its array holds
	// more than this many batches' worth of items lets the array go, so a
	// burst (a reconnect storm's logins) does not pin memory afterwards.
	// An array of batchQueueMinCap is always kept.
	batchQueueKeepBatches = 4
)

// batcher collects items from many connections and hands them to flush in
// batches. One goroutine flushes, so batches leave in the order items came
// and a slow peer slows only the batcher, never the connections feeding it.
//
// With a delay, a batch waits up to delay after its first item for more.
// With delay 0 (eager) the flusher never waits: an item that finds it
// idle leaves at once, alone, and the items that arrive while a batch is
// out go together in the next one as soon as it returns. Under load the
// batches grow by themselves to what arrives in one round trip; a caller
// waiting for the flush waits one round trip at most behind another.
//
// The queue is a ring that grows on demand up to its bound and gives its
// array back once it empties after a burst: a pre-sized channel held
// bound × item size (megabytes for the room's five batchers) whether
// used or not.
type batcher[T any] struct {
	size  int
	delay time.Duration
	// bound is the most items queued (not counting the batch being
	// flushed); Add sheds beyond it.
	bound int
	flush func([]T)
	// dropped is called when Add sheds an item (queue full or closed).
	dropped func()

	mu     sync.Mutex
	ring   []T // queued items are ring[head], ring[head+1], ... (mod len), n of them
	head   int
	n      int
	closed bool

	// wake has one slot: Add fills it when the queue goes from empty to
	// non-empty, which is when the flusher may be waiting.
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func newBatcher[T any](size int, delay time.Duration, queue int, flush func([]T), dropped func()) *batcher[T] {
	if dropped == nil {
		dropped = func() {}
	}
	b := &batcher[T]{
		size: size, delay: delay, bound: queue, flush: flush, dropped: dropped,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
	}
	go b.run()
	return b
}

// Add queues v without blocking; it reports false when v was shed.
func (b *batcher[T]) Add(v T) bool {
	b.mu.Lock()
	if b.closed || b.n >= b.bound {
		b.mu.Unlock()
		b.dropped()
		return false
	}
	if b.n == len(b.ring) {
		b.growLocked()
	}
	b.ring[(b.head+b.n)%len(b.ring)] = v
	b.n++
	first := b.n == 1
	b.mu.Unlock()
	if first {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// growLocked doubles the ring (up to the bound), keeping the items' order.
func (b *batcher[T]) growLocked() {
	c := min(max(2*len(b.ring), batchQueueMinCap), b.bound)
	ring := make([]T, c)
	k := copy(ring, b.ring[b.head:])
	copy(ring[k:], b.ring[:b.head])
	b.ring, b.head = ring, 0
}

// take moves up to size-len(batch) queued items, oldest first, onto batch.
func (b *batcher[T]) take(batch []T) []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.n > 0 && len(batch) < b.size {
		k := min(b.n, b.size-len(batch), len(b.ring)-b.head)
		part := b.ring[b.head : b.head+k]
		batch = append(batch, part...)
		clear(part) // the queue must not keep what it handed over alive
		b.head = (b.head + k) % len(b.ring)
		b.n -= k
	}
	if b.n == 0 {
		b.head = 0
		// A batch short of size with nothing left behind it: the flusher
		// has caught up, so a big array is a past burst's. (Under steady
		// load batches leave full and the array is kept, not regrown.)
		if len(batch) < b.size && len(b.ring) > max(batchQueueKeepBatches*b.size, batchQueueMinCap) {
			b.ring = nil
		}
	}
	return batch
}

func (b *batcher[T]) run() {
	defer close(b.done)
	var batch []T
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		if batch = b.take(batch[:0]); len(batch) == 0 {
			select {
			case <-b.wake:
				continue
			case <-b.quit:
				b.drain(batch)
				return
			}
		}
		if len(batch) < b.size && b.delay > 0 {
			timer.Reset(b.delay)
		collect:
			for len(batch) < b.size {
				select {
				case <-b.wake:
					batch = b.take(batch)
				case <-timer.C:
					break collect
				case <-b.quit:
					break collect
				}
			}
			timer.Stop()
		}
		b.flush(batch)
		clear(batch)
	}
}

// drain flushes whatever is queued when the batcher closes. Add takes
// nothing once closed is set, so an empty take means the end.
func (b *batcher[T]) drain(batch []T) {
	for {
		if batch = b.take(batch[:0]); len(batch) == 0 {
			return
		}
		b.flush(batch)
		clear(batch)
	}
}

// Len returns the number of items waiting for a flush.
func (b *batcher[T]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// ringCap returns the queue's capacity, for tests of its release.
func (b *batcher[T]) ringCap() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.ring)
}

// Close stops taking items, flushes what is queued, and waits for that up
// to ctx's deadline (flush functions put their own deadlines on calls).
func (b *batcher[T]) Close(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
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

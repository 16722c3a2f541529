package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Live delivery of stored messages is batched across requests: one
// Register lookup and one PushBatch per room for up to deliveryBatchMax
// messages, instead of one of each per request.
const (
	// deliveryQueueSize bounds the messages waiting for a flush: ≈3 s of
	// the most this box has taken. Beyond it requests deliver inline.
	deliveryQueueSize = 8192
	// deliveryBatchMax matches registerLookupCh, so a flush is one lookup.
	deliveryBatchMax = registerLookupCh
	// deliveryBatchWait is how long a batch waits for company while a
	// flush is in flight; under load batches fill before it passes.
	deliveryBatchWait = 2 * time.Millisecond
	// deliveryFlushers bounds concurrent flushes. While all are busy the
	// queue grows, so batches get larger exactly when the load is high.
	deliveryFlushers = 4
	// Bounds of one Room.PushBatch call, the room's own limits.
	roomBatchPushes  = 1000
	roomBatchTargets = 10000
)

// deliveryBatcher collects stored messages from all requests and delivers
// them in batches.
type deliveryBatcher struct {
	deliver func(context.Context, []*internalpb.Message) (int, error)
	m       *metrics
	log     *slog.Logger

	// mu orders enqueue against close: no send on a closed queue.
	mu     sync.RWMutex
	closed bool
	queue  chan *internalpb.Message

	// wait is deliveryBatchWait; tests lengthen it.
	wait     time.Duration
	slots    chan struct{}
	inFlight atomic.Int32
	flushes  sync.WaitGroup
	// stop aborts flushes still running when the shutdown deadline passes.
	stop   context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newDeliveryBatcher(deliver func(context.Context, []*internalpb.Message) (int, error), m *metrics, log *slog.Logger) *deliveryBatcher {
	return newDeliveryBatcherWait(deliver, m, log, deliveryBatchWait)
}

// newDeliveryBatcherWait is newDeliveryBatcher with wait for
// deliveryBatchWait.
func newDeliveryBatcherWait(deliver func(context.Context, []*internalpb.Message) (int, error), m *metrics, log *slog.Logger, wait time.Duration) *deliveryBatcher {
	stop, cancel := context.WithCancel(context.Background())
	b := &deliveryBatcher{
		deliver: deliver, m: m, log: log,
		queue: make(chan *internalpb.Message, deliveryQueueSize),
		slots: make(chan struct{}, deliveryFlushers), wait: wait,
		stop: stop, cancel: cancel, done: make(chan struct{}),
	}
	go b.collect()
	return b
}

// enqueue queues msgs for delivery and returns those that did not fit (the
// queue is full or the batcher is closed); it never blocks.
func (b *deliveryBatcher) enqueue(msgs []*internalpb.Message) []*internalpb.Message {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return msgs
	}
	for i, m := range msgs {
		b.m.deliveryPending.Inc()
		select {
		case b.queue <- m:
		default:
			b.m.deliveryPending.Dec()
			return msgs[i:]
		}
	}
	return nil
}

// collect forms batches with the store batcher's policy (storebatch.go):
// a message that finds no flush in flight leaves at once with what is
// queued; while one is in flight, the batch collects for up to
// deliveryBatchWait or deliveryBatchMax messages; while every flusher is
// busy the queue grows, and the next batch takes it all.
func (b *deliveryBatcher) collect() {
	defer close(b.done)
	defer b.flushes.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for first := range b.queue {
		batch := append(make([]*internalpb.Message, 0, deliveryBatchMax), first)
		batch, open := drainQueue(b.queue, batch, deliveryBatchMax)
		if open && len(batch) < deliveryBatchMax && b.inFlight.Load() > 0 {
			timer.Reset(b.wait)
		fill:
			for len(batch) < deliveryBatchMax {
				select {
				case m, ok := <-b.queue:
					if !ok {
						open = false
						break fill
					}
					batch = append(batch, m)
				case <-timer.C:
					break fill
				}
			}
			timer.Stop()
		}
		b.slots <- struct{}{}
		if open {
			batch, open = drainQueue(b.queue, batch, deliveryBatchMax)
		}
		b.inFlight.Add(1)
		b.flushes.Add(1)
		go b.flush(batch)
		if !open {
			return
		}
	}
}

func (b *deliveryBatcher) flush(batch []*internalpb.Message) {
	defer func() {
		b.m.deliveryPending.Sub(float64(len(batch)))
		b.inFlight.Add(-1)
		<-b.slots
		b.flushes.Done()
	}()
	if b.stop.Err() != nil {
		return // shutdown deadline passed: the messages stay stored
	}
	b.m.deliveryBatch.Observe(float64(len(batch)))
	ctx, cancel := context.WithTimeout(b.stop, asyncDeliveryTimeout)
	defer cancel()
	if _, err := b.deliver(ctx, batch); err != nil {
		b.log.Warn("center: batched delivery failed; messages stay stored", "count", len(batch), "err", err)
	}
}

// close stops taking messages and delivers what is queued. When ctx ends
// first, running deliveries are abandoned: their messages stay stored and
// reach their users on the next connect.
func (b *deliveryBatcher) close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		left := len(b.queue)
		b.cancel()
		<-b.done
		return fmt.Errorf("center: %d queued deliveries abandoned at shutdown: %w", left, ctx.Err())
	}
}

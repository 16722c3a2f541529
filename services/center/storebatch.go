package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// QoS 1 unicast stores are batched across requests: the messages of many
// concurrent pushes go to saver in one Store call (with independent set,
// so a message saver rejects fails only its own request), and each request
// is answered after that call, i.e. after the shared MySQL commit.
//
// Batching policy, which adapts to load without a fixed delay:
//   - a message that finds no Store call in flight leaves at once with
//     whatever is already queued: alone at low load, no added latency;
//   - while a call is in flight, the batch collects for up to
//     storeBatchWait or storeBatchMax messages, whichever first;
//   - at most storeBatchFlights calls run at once; while all are busy the
//     queue grows, so batches grow exactly when the load is high.
const (
	// storeBatchMax is twice saver's group commit (100 rows), so one call
	// fills its writers' next commits without splitting a request.
	storeBatchMax = 200
	// storeBatchWait bounds what a message waits for company: MariaDB alone
	// takes batches of 20 at p99 14 ms, so a few ms buys most of the gain.
	storeBatchWait = 2 * time.Millisecond
	// storeBatchFlights matches saver's group-commit writers.
	storeBatchFlights = 4
	// storeBatchQueue bounds the messages waiting for a call: about a
	// tenth of a second at 20k pushes/s. Beyond it pushes are refused with
	// 503 UNAVAILABLE (nothing stored), not queued without bound.
	storeBatchQueue = 2048
	// slowStore is when a batch is logged with where its time went: queued
	// for a free call, or in saver's Store.
	slowStore = 250 * time.Millisecond
)

var (
	errStoreQueueFull = errors.New("center: store queue full")
	errStoreClosed    = errors.New("center: store batcher stopped")
)

// storeOutcome is what became of one message of a batch.
type storeOutcome struct {
	// replacedBy is non-zero when the message was not stored because its
	// idempotency key names that earlier message.
	replacedBy uint64
	err        error
	// batch is how many messages the Store call that carried it held.
	batch int
}

type storeItem struct {
	ctx    context.Context
	msg    *internalpb.Message
	queued time.Time
	done   chan storeOutcome // buffered: a flush never blocks on a gone caller
}

type storeBatcher struct {
	saver internalpb.SaverClient
	m     *storeBatchMetrics
	log   *slog.Logger

	// mu orders submit against close: no send on a closed queue.
	mu     sync.RWMutex
	closed bool
	queue  chan *storeItem

	slots    chan struct{}
	inFlight atomic.Int32
	flushes  sync.WaitGroup
	done     chan struct{}
}

func newStoreBatcher(saver internalpb.SaverClient, m *storeBatchMetrics, log *slog.Logger) *storeBatcher {
	b := &storeBatcher{
		saver: saver, m: m, log: log,
		queue: make(chan *storeItem, storeBatchQueue),
		slots: make(chan struct{}, storeBatchFlights),
		done:  make(chan struct{}),
	}
	go b.collect()
	return b
}

// submit makes msg durable through the next batch and waits for its
// outcome or ctx. After ctx ends the message may still be stored; before
// its batch leaves, a message whose ctx ended is dropped.
func (b *storeBatcher) submit(ctx context.Context, msg *internalpb.Message) storeOutcome {
	it := &storeItem{ctx: ctx, msg: msg, queued: time.Now(), done: make(chan storeOutcome, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return storeOutcome{err: errStoreClosed}
	}
	select {
	case b.queue <- it:
	default:
		b.mu.RUnlock()
		b.m.rejected.Inc()
		return storeOutcome{err: errStoreQueueFull}
	}
	b.mu.RUnlock()
	select {
	case out := <-it.done:
		return out
	case <-ctx.Done():
		return storeOutcome{err: ctx.Err()}
	}
}

func (b *storeBatcher) collect() {
	defer close(b.done)
	defer b.flushes.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for first := range b.queue {
		batch := append(make([]*storeItem, 0, storeBatchMax), first)
		batch, open := drainQueue(b.queue, batch, storeBatchMax)
		if open && len(batch) < storeBatchMax && b.inFlight.Load() > 0 {
			timer.Reset(storeBatchWait)
		fill:
			for len(batch) < storeBatchMax {
				select {
				case it, ok := <-b.queue:
					if !ok {
						open = false
						break fill
					}
					batch = append(batch, it)
				case <-timer.C:
					break fill
				}
			}
			timer.Stop()
		}
		b.slots <- struct{}{}
		if open {
			// Top up with what arrived while every call was busy.
			batch, open = drainQueue(b.queue, batch, storeBatchMax)
		}
		b.inFlight.Add(1)
		b.flushes.Add(1)
		go b.flush(batch)
		if !open {
			return
		}
	}
}

func (b *storeBatcher) flush(batch []*storeItem) {
	defer func() {
		b.inFlight.Add(-1)
		<-b.slots
		b.flushes.Done()
	}()
	live := batch[:0]
	for _, it := range batch {
		if err := it.ctx.Err(); err != nil {
			it.done <- storeOutcome{err: err} // caller gone: not stored
			continue
		}
		live = append(live, it)
	}
	if len(live) == 0 {
		return
	}
	msgs := make([]*internalpb.Message, len(live))
	for i, it := range live {
		msgs[i] = it.msg
	}
	b.m.batch.Observe(float64(len(msgs)))
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	// Fresh: every id was minted for its request and this call is its only
	// Store (a failure fails the request; the client's retry mints anew).
	start := time.Now()
	rep, err := b.saver.Store(ctx, &internalpb.StoreRequest{Messages: msgs, Independent: true, Fresh: true})
	if call, queued := time.Since(start), start.Sub(live[0].queued); call+queued >= slowStore {
		b.log.Warn("center: slow store batch", "messages", len(msgs), "queued_ms", queued.Milliseconds(),
			"store_ms", call.Milliseconds(), "in_flight", b.inFlight.Load())
	}
	if err != nil {
		err = fmt.Errorf("saver: store batch of %d from id %d: %w", len(msgs), msgs[0].GetId(), err)
		for _, it := range live {
			it.done <- storeOutcome{err: err, batch: len(msgs)}
		}
		return
	}
	for _, it := range live {
		out := storeOutcome{replacedBy: rep.GetReplaced()[it.msg.GetId()], batch: len(msgs)}
		if f, ok := rep.GetFailed()[it.msg.GetId()]; ok {
			out.err = storeFailure(it.msg.GetId(), f)
		}
		it.done <- out
	}
}

// storeFailure turns saver's answer for one rejected message into the API
// error of its request. Center validates first, so an INVALID_ARGUMENT
// here means center and saver disagree on a limit: the caller learns which.
func storeFailure(id uint64, f *internalpb.StoreFailure) error {
	if codes.Code(f.GetCode()) == codes.InvalidArgument {
		return errorf(CodeInvalidArgument, "the message store rejected the message: "+f.GetMessage())
	}
	return fmt.Errorf("saver: store %d: %s (%s)", id, f.GetMessage(), codes.Code(f.GetCode()))
}

// close stops taking messages and stores what is queued; when ctx ends
// first it returns without waiting for the calls in flight, whose callers
// time out on their own deadlines.
func (b *storeBatcher) close(ctx context.Context) error {
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
		return fmt.Errorf("center: %d queued stores still running at shutdown: %w", len(b.queue), ctx.Err())
	}
}

// storeQoS1 stores msgs before the answer: a single message (a unicast
// push) through the batcher, more (a multi push) in calls of their own.
// The error is an *apiError when it names a request-specific problem.
func (s *Server) storeQoS1(ctx context.Context, msgs []*internalpb.Message) (map[uint64]uint64, error) {
	if len(msgs) != 1 {
		return s.store(ctx, msgs)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	out := s.stores.submit(ctx, msgs[0])
	switch {
	case errors.Is(out.err, errStoreQueueFull):
		return nil, errorf(CodeUnavailable, "too many pushes are waiting to be stored; nothing was accepted, retry shortly")
	case out.err != nil:
		return nil, out.err
	case out.replacedBy != 0:
		return map[uint64]uint64{msgs[0].GetId(): out.replacedBy}, nil
	}
	return nil, nil
}

// storeBatchMetrics are the store batcher's and the gRPC API's.
type storeBatchMetrics struct {
	batch    prometheus.Histogram
	rejected prometheus.Counter
	// streamInFlight counts PushStream pushes taken off their streams and
	// not yet answered, over all streams.
	streamInFlight prometheus.Gauge
}

func newStoreBatchMetrics(reg prometheus.Registerer) *storeBatchMetrics {
	m := &storeBatchMetrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushgw_center_store_batch_messages",
			Help:    "QoS 1 unicast messages per batched Saver.Store call.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200},
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_center_store_queue_full_total",
			Help: "Unicast QoS 1 pushes refused with 503 because the store batcher's queue was full.",
		}),
		streamInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_center_grpc_stream_inflight",
			Help: "PushStream pushes read from their streams and not yet answered (at most 256 per stream).",
		}),
	}
	reg.MustRegister(m.batch, m.rejected, m.streamInFlight)
	return m
}

// drainQueue appends what q holds now, without waiting, up to max items;
// open is false once q is closed and empty. Both of center's batchers top
// their batches up with it.
func drainQueue[T any](q <-chan T, batch []T, max int) (_ []T, open bool) {
	for len(batch) < max {
		select {
		case it, ok := <-q:
			if !ok {
				return batch, false
			}
			batch = append(batch, it)
		default:
			return batch, true
		}
	}
	return batch, true
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Group commit. MariaDB here is CPU-bound at ~10k single-row commits/s but
// reaches 66–88k rows/s with ~100-row batches from ~8 writers (DESIGN.md,
// "Measured on these machines"). So Store calls do not commit on their own:
// they queue, and a few writers each gather requests, commit them in one
// transaction, fill the Redis inboxes in one pipeline, and only then answer
// every caller of the batch.
//
// A writer waits for company (up to groupCommitWait or groupCommitRows
// rows) only while another writer is committing: then MariaDB is busy and
// a bigger batch costs less per row. With no commit in flight it commits at
// once what is queued, so a lone Store (center already batches across
// requests) does not pay groupCommitWait of latency for nothing.
const (
	groupCommitWait    = 2 * time.Millisecond
	groupCommitRows    = 100
	groupCommitWriters = 4
	// storeQueueLen bounds the requests waiting for a writer; beyond it
	// Store sheds load with ResourceExhausted instead of growing memory.
	storeQueueLen = 1024
	commitTimeout = 10 * time.Second
	// postCommitRedis bounds the inbox write that follows a commit. The
	// callers are answered only after it, and a Redis that is down or
	// restarting must not make a committed Store look failed to center
	// (whose own deadline is a couple of seconds): the business would be
	// told "not stored", retry, and the user would get the message twice.
	postCommitRedis = 300 * time.Millisecond
	// slowCommit is when a commit (MySQL and the inbox write after it) is
	// logged with where its time went: a stall that long is an outlier in
	// every latency histogram, and the log says which side it was.
	slowCommit = 250 * time.Millisecond
)

var (
	errQueueFull = errors.New("saver: store queue full")
	errStopped   = errors.New("saver: stopping")
)

type storeReq struct {
	msgs []*internalpb.Message
	// replaced is set by the writer before done: messages not stored
	// because their idempotency key named an earlier one.
	replaced map[uint64]uint64
	// independent requests (Store with independent set) answer a message
	// whose commit failed in failed, by id, and store the others.
	independent bool
	// fresh requests carry ids never sent to saver before: their insert
	// skips the outcome check (StoreRequest.fresh).
	fresh  bool
	failed map[uint64]error
	done   chan error
}

type committer struct {
	db      *msgDB
	inbox   *inbox
	log     *slog.Logger
	metrics *metrics

	queue  chan *storeReq
	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	wg     sync.WaitGroup
	// committing counts writers between gathering and answering a batch.
	committing atomic.Int32
	// wait is groupCommitWait; tests lengthen it to tell "waited for
	// company" from "left at once" without timing anything.
	wait time.Duration
}

// newCommitter starts writers writers draining a queue of queueLen
// requests (groupCommitWriters and storeQueueLen in production).
func newCommitter(db *msgDB, in *inbox, m *metrics, log *slog.Logger, writers, queueLen int) *committer {
	c := &committer{db: db, inbox: in, metrics: m, log: log, queue: make(chan *storeReq, queueLen), wait: groupCommitWait}
	m.storeQueue.Set(0)
	for i := 0; i < writers; i++ {
		c.wg.Add(1)
		go c.writer()
	}
	return c
}

// store queues msgs and waits until they are committed (or ctx ends; the
// commit may then still happen, which a retried Store tolerates). It
// returns the messages replaced by an earlier one with the same
// idempotency key.
func (c *committer) store(ctx context.Context, msgs []*internalpb.Message) (map[uint64]uint64, error) {
	req := &storeReq{msgs: msgs, done: make(chan error, 1)}
	if err := c.submit(ctx, req); err != nil {
		return nil, err
	}
	return req.replaced, nil
}

// storeEach is store for unrelated messages: one whose commit fails is
// returned in failed and does not fail the others.
func (c *committer) storeEach(ctx context.Context, msgs []*internalpb.Message, fresh bool) (replaced map[uint64]uint64, failed map[uint64]error, err error) {
	req := &storeReq{msgs: msgs, independent: true, fresh: fresh, done: make(chan error, 1)}
	if err := c.submit(ctx, req); err != nil {
		return nil, nil, err
	}
	return req.replaced, req.failed, nil
}

// submit queues req and waits for its writer's answer.
func (c *committer) submit(ctx context.Context, req *storeReq) error {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return errStopped
	}
	select {
	case c.queue <- req:
		c.metrics.storeQueue.Inc()
	default:
		c.mu.RUnlock()
		c.metrics.storeRejected.Inc()
		return errQueueFull
	}
	c.mu.RUnlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops taking requests; queued ones are still committed.
func (c *committer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *committer) writer() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for first := range c.queue {
		c.metrics.storeQueue.Dec()
		batch, rows := c.gather(first, timer)
		c.committing.Add(1)
		replaced, err := c.commit(batch, rows)
		if err != nil && (len(batch) > 1 || first.independent) {
			// One bad message must not fail its batch-mates: commit each
			// request alone, and each message of an independent one alone.
			c.fallback(batch)
			c.committing.Add(-1)
			continue
		}
		for _, r := range batch {
			for _, m := range r.msgs {
				if to, ok := replaced[m.GetId()]; ok {
					if r.replaced == nil {
						r.replaced = map[uint64]uint64{}
					}
					r.replaced[m.GetId()] = to
				}
			}
			r.done <- err
		}
		c.committing.Add(-1)
	}
}

// gather forms a batch from first: what is queued now, and, while another
// writer is committing, what arrives within groupCommitWait, up to
// groupCommitRows rows.
func (c *committer) gather(first *storeReq, timer *time.Timer) ([]*storeReq, int) {
	batch, rows := []*storeReq{first}, len(first.msgs)
	var expired <-chan time.Time // set once the wait for company starts
	for rows < groupCommitRows {
		var (
			r  *storeReq
			ok bool
		)
		if expired == nil {
			select {
			case r, ok = <-c.queue:
			default:
				if c.committing.Load() == 0 {
					return batch, rows
				}
				timer.Reset(c.wait)
				defer timer.Stop()
				expired = timer.C
				continue
			}
		} else {
			select {
			case r, ok = <-c.queue:
			case <-expired:
				return batch, rows
			}
		}
		if !ok {
			return batch, rows
		}
		c.metrics.storeQueue.Dec()
		batch = append(batch, r)
		rows += len(r.msgs)
	}
	return batch, rows
}

func (c *committer) commit(batch []*storeReq, rows int) (map[uint64]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	msgs := make([]*internalpb.Message, 0, rows)
	var check []uint64
	seen := make(map[uint64]bool, rows)
	for _, r := range batch {
		for _, m := range r.msgs {
			if !seen[m.GetId()] {
				seen[m.GetId()] = true
				msgs = append(msgs, m)
				if !r.fresh {
					check = append(check, m.GetId())
				}
			}
		}
	}
	replaced, err := c.commitMsgs(ctx, msgs, check)
	if err != nil {
		c.log.Error("store commit failed", "rows", len(msgs), "requests", len(batch), "err", err)
		return nil, err
	}
	return replaced, nil
}

// commitMsgs stores msgs in one transaction, then adds them to the Redis
// inboxes. check lists the ids that may already have an outcome.
func (c *committer) commitMsgs(ctx context.Context, msgs []*internalpb.Message, check []uint64) (map[uint64]uint64, error) {
	start := time.Now()
	kept, replaced, collapsed, err := c.db.insert(ctx, msgs, check, start)
	c.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	c.metrics.batchRows.Observe(float64(len(msgs)))
	c.metrics.stored.Add(float64(len(kept)))
	// MySQL is the truth and the commit is done: a Redis failure costs only
	// the fast path (Pending falls back to MySQL), never the message.
	rctx, rcancel := context.WithTimeout(ctx, postCommitRedis)
	defer rcancel()
	committed := time.Now()
	if err := c.inbox.add(rctx, kept); err != nil {
		c.metrics.redisErrors.WithLabelValues("store").Inc()
		c.log.Warn("inbox add after commit failed; Pending will read MySQL", "rows", len(kept), "err", err)
	}
	if d := time.Since(start); d >= slowCommit {
		c.log.Warn("saver: slow store commit", "rows", len(msgs), "mysql_ms", committed.Sub(start).Milliseconds(),
			"redis_ms", time.Since(committed).Milliseconds(), "total_ms", d.Milliseconds())
	}
	if len(collapsed) > 0 {
		c.metrics.outcomes.WithLabelValues("collapsed").Add(float64(len(collapsed)))
		// A collapsed id left in an inbox is harmless: Pending checks every
		// candidate against MySQL and drops the ones gone from it.
		if err := c.inbox.remove(rctx, collapsed); err != nil {
			c.metrics.redisErrors.WithLabelValues("store").Inc()
			c.log.Warn("inbox remove of collapsed messages failed; Pending drops them", "rows", len(collapsed), "err", err)
		}
	}
	return replaced, nil
}

// fallback answers a batch whose group commit failed: each request is
// committed in its own transaction, and each message of an independent
// request in its own, so only what really fails is answered as failed.
// It costs one commit per message, but only after a failure.
func (c *committer) fallback(batch []*storeReq) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	for _, r := range batch {
		if !r.independent {
			replaced, err := c.commitMsgs(ctx, r.msgs, r.checkIDs(r.msgs))
			if err != nil {
				c.log.Error("store commit failed alone", "rows", len(r.msgs), "err", err)
			}
			r.replaced = replaced
			r.done <- err
			continue
		}
		for _, m := range r.msgs {
			one := []*internalpb.Message{m}
			replaced, err := c.commitMsgs(ctx, one, r.checkIDs(one))
			if err != nil {
				c.log.Warn("store commit of one message failed", "id", m.GetId(), "err", err)
				if r.failed == nil {
					r.failed = map[uint64]error{}
				}
				r.failed[m.GetId()] = fmt.Errorf("saver: store %d: %w", m.GetId(), err)
				continue
			}
			for from, to := range replaced {
				if r.replaced == nil {
					r.replaced = map[uint64]uint64{}
				}
				r.replaced[from] = to
			}
		}
		r.done <- nil
	}
}

// checkIDs lists the ids of msgs (of r) whose insert checks for an earlier
// outcome: all of them, unless r is fresh.
func (r *storeReq) checkIDs(msgs []*internalpb.Message) []uint64 {
	if r.fresh {
		return nil
	}
	ids := make([]uint64, len(msgs))
	for i, m := range msgs {
		ids[i] = m.GetId()
	}
	return ids
}

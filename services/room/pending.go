package main

import (
	"context"
	"sync"
	"time"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// What was stored for a user while they were away is pulled from saver
// when they log in, one page of maxInflight messages at a time: the next
// page follows once the client has acked half of the last one, so a long
// backlog arrives in full on one connection without ever filling its send
// queue. A pull that fails (saver restarting, MySQL down) is tried again
// while the connection lives: messages a dead connection took but never
// acked are not in the redelivery sweep's reach, only in this pull's.

// pendingRetryDelays are the waits before each retry of a failed pull;
// after the last the messages wait for the next login.
var pendingRetryDelays = [...]time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}

// pendingState is one session's paging through its backlog.
type pendingState struct {
	mu sync.Mutex
	// cursor is the last id of a full page sent; 0 when no page is open.
	cursor uint64
	// left counts that page's messages not yet acked.
	left int
	// pulling is set while a pull is queued or running.
	pulling bool
	fails   int
}

// start marks a pull as begun and returns where it starts; false if one
// is already under way.
func (p *pendingState) start() (after uint64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pulling {
		return 0, false
	}
	p.pulling = true
	return p.cursor, true
}

// done records a pull's outcome: a full page leaves the cursor at its last
// id, a short one ends the backlog. It returns the retry number of a
// failure (1-based), 0 on success.
func (p *pendingState) done(page []uint64, full bool, err error) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pulling = false
	if err != nil {
		p.fails++
		return p.fails
	}
	p.fails = 0
	if full && len(page) > 0 {
		p.cursor, p.left = page[len(page)-1], len(page)
	} else {
		p.cursor, p.left = 0, 0
	}
	return 0
}

// acked counts acks against the open page and reports whether the next
// page is due (half of a page of size limit acked).
func (p *pendingState) acked(ids []uint64, limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cursor == 0 {
		return false
	}
	for _, id := range ids {
		if id <= p.cursor && p.left > 0 {
			p.left--
		}
	}
	return p.left <= limit/2 && !p.pulling
}

// pullPending queues a pull of s's next page on the pending pool.
func (r *room) pullPending(s *session) {
	after, ok := s.pending.start()
	if !ok {
		return
	}
	if err := r.pending.Submit(func() { r.deliverPending(s, after) }); err != nil {
		r.m.poolRejected.WithLabelValues("pending").Inc()
		r.log.Warn("room: pending pull skipped; pool full", "conn", s.id)
		r.retryPending(s, s.pending.done(nil, false, err))
	}
}

func (r *room) deliverPending(s *session, after uint64) {
	limit := r.cfg.maxInflight()
	ctx, cancel := context.WithTimeout(context.Background(), grpcconn.DefaultCallTimeout)
	rep, err := r.saver.Pending(ctx, &internalpb.PendingRequest{
		App: s.key.app, User: s.key.user, Device: s.key.device, Limit: uint32(limit), AfterId: after,
	})
	cancel()
	if err != nil {
		r.m.peerErrors.WithLabelValues("Saver.Pending").Inc()
		r.log.Debug("room: pending pull failed", "conn", s.id, "err", err)
		r.retryPending(s, s.pending.done(nil, false, err))
		return
	}
	msgs := rep.GetMessages()
	sent := make([]uint64, 0, len(msgs))
	now := time.Now()
	for _, m := range msgs {
		if expired(m, now) {
			continue
		}
		frame, err := pushFrame(m)
		if err != nil {
			continue
		}
		// Saver counted these as delivered when it returned them.
		if s.send(protocol.OpPush, frame) != nil {
			break
		}
		sent = append(sent, m.GetId())
		r.m.pushes.Inc()
	}
	s.pending.done(sent, len(msgs) == limit, nil)
}

// retryPending schedules retry number n of a failed pull while s lives.
func (r *room) retryPending(s *session, n int) {
	if n == 0 || n > len(pendingRetryDelays) {
		return
	}
	time.AfterFunc(pendingRetryDelays[n-1], func() {
		if !s.closed.Load() {
			r.pullPending(s)
		}
	})
}

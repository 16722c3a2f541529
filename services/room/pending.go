package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// What was stored for a user while they were away is pulled from saver
// when they log in, one page of maxInflight messages at a time: the next
// page follows once the client has acked half of its window, so a long
// backlog arrives in full on one connection without ever filling its send
// queue. A pull that fails (saver restarting, MySQL down) is tried again
// while the connection lives: messages a dead connection took but never
// acked are not in the redelivery sweep's reach, only in this pull's.
//
// Every QoS 1 message written to a connection, live or pulled, is in its
// in-flight window until acked: a message offered twice (the live push and
// the login's pull racing, or a redelivery) is written once, and live
// pushes beyond the window are held back (center keeps the stored copy; the
// next pull brings it once acks make room).

// pendingRetryDelays are the waits before each retry of a failed pull;
// after the last the messages wait for the next login. Short and steady
// first: saver or MariaDB restarting is back within seconds, and a pull
// that waited out a growing back-off (1, 2, 5 s) held a moved client's
// messages for 8 s after a two-second MariaDB restart in the fault suite,
// and one that reached the 5 and 10 s steps held them 17 s when MariaDB
// took ten seconds to come back: no gap is above 3 s for the first 20 s.
// Each wait is jittered (pendingRetryJitter) so the sessions of one
// outage do not return to saver in one burst.
var pendingRetryDelays = [...]time.Duration{500 * time.Millisecond, time.Second, time.Second, time.Second,
	2 * time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second,
	3 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}

// pendingRetryJitter is the fraction of a retry wait added at random.
const pendingRetryJitter = 0.2

// pendingState is one session's in-flight window and paging through its
// backlog. What only exists while QoS 1 messages are in flight or were
// just acked sits behind w, allocated on first use and dropped once empty
// again: one pendingState exists per open connection, nearly all idle, and
// the two slices and their generation would cost 48 bytes on each.
type pendingState struct {
	mu sync.Mutex
	// w is the window; nil while nothing is in flight or recently acked.
	w *pendingWindow
	// cursor is the last id of a page that may have more after it; 0 when
	// no page is open.
	cursor uint64
	// behind is set when a message was held back for a full window: pull
	// once there is room.
	behind bool
	// pulling is set while a pull is queued or running.
	pulling bool
	// fails counts failed pulls in a row (saturating; one byte so the
	// state packs into the session's size class).
	fails uint8
}

// pendingWindow is the part of pendingState that is only non-empty while
// QoS 1 messages are in flight or were acked moments ago.
type pendingWindow struct {
	// inflight are the QoS 1 ids written and not yet acked (at most the
	// window).
	inflight []uint64
	// acked are ids acked whose report may not have reached saver yet, so
	// a pull may still return them; ackGen is the reporter's flush count
	// at the latest ack. They are dropped once two flushes have completed
	// since (the batch being collected at the ack, and at most the one
	// being sent).
	acked  []uint64
	ackGen uint64
}

// inflightLocked returns the ids in flight (nil for none); the caller
// holds mu and must not keep the slice past it.
func (p *pendingState) inflightLocked() []uint64 {
	if p.w == nil {
		return nil
	}
	return p.w.inflight
}

// ackedLocked returns the ids recently acked and the flush count at the
// latest ack.
func (p *pendingState) ackedLocked() ([]uint64, uint64) {
	if p.w == nil {
		return nil, 0
	}
	return p.w.acked, p.w.ackGen
}

// windowLocked returns the window, allocating it on first use.
func (p *pendingState) windowLocked() *pendingWindow {
	if p.w == nil {
		p.w = &pendingWindow{}
	}
	return p.w
}

// setAckedLocked replaces the recently acked ids (a resumed session takes
// its predecessor's); acked is kept, not copied.
func (p *pendingState) setAckedLocked(acked []uint64, gen uint64) {
	if len(acked) == 0 && p.w == nil {
		return
	}
	w := p.windowLocked()
	w.acked, w.ackGen = acked, gen
	p.releaseLocked()
}

// addInflightLocked enters id into the window without checks.
func (p *pendingState) addInflightLocked(id uint64) {
	w := p.windowLocked()
	w.inflight = append(w.inflight, id)
}

// releaseLocked drops the window once it holds nothing.
func (p *pendingState) releaseLocked() {
	if w := p.w; w != nil && len(w.inflight) == 0 && len(w.acked) == 0 {
		p.w = nil
	}
}

// admitResult is what admit decided for one QoS 1 message.
type admitResult uint8

const (
	admitOK        admitResult = iota // write it
	admitDuplicate                    // already in flight: do not write it again
	admitFull                         // window full: hold it back
)

// admit enters id into the window of size limit.
func (p *pendingState) admit(id uint64, limit int) admitResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	acked, _ := p.ackedLocked()
	inflight := p.inflightLocked()
	if slices.Contains(inflight, id) || slices.Contains(acked, id) {
		return admitDuplicate
	}
	if len(inflight) >= limit {
		p.behind = true
		return admitFull
	}
	w := p.windowLocked()
	if w.inflight == nil {
		w.inflight = make([]uint64, 0, min(limit, 8))
	}
	w.inflight = append(w.inflight, id)
	return admitOK
}

// forget removes id whose write failed.
func (p *pendingState) forget(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLocked(id)
	p.releaseLocked()
}

// removeLocked takes id out of the window; the caller releases the window
// once done with it.
func (p *pendingState) removeLocked(id uint64) {
	w := p.w
	if w == nil {
		return
	}
	if i := slices.Index(w.inflight, id); i >= 0 {
		w.inflight = slices.Delete(w.inflight, i, i+1)
		if len(w.inflight) == 0 {
			w.inflight = nil
		}
	}
}

// expireAcked forgets acked ids saver has certainly been told of, given
// the reporter's flush count now.
func (p *pendingState) expireAcked(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireAckedLocked(gen)
	p.releaseLocked()
}

func (p *pendingState) expireAckedLocked(gen uint64) {
	if w := p.w; w != nil && w.acked != nil && gen >= w.ackGen+2 {
		w.acked = nil
	}
}

// due reports whether another pull should start now: a page is open or
// a message was held back, the window has room, and none is under way.
func (p *pendingState) due(limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return (p.cursor != 0 || p.behind) && len(p.inflightLocked()) <= limit/2 && !p.pulling
}

// start marks a pull as begun and returns where it starts; false if one
// is already under way.
func (p *pendingState) start() (after uint64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pulling {
		return 0, false
	}
	p.pulling, p.behind = true, false
	return p.cursor, true
}

// done records a pull's outcome: more says a page may follow last (a full
// page, or one cut short by the window), otherwise the backlog is done. It
// returns the retry number of a failure (1-based), 0 on success.
func (p *pendingState) done(last uint64, more bool, err error) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pulling = false
	if err != nil {
		if p.fails < 255 {
			p.fails++
		}
		return int(p.fails)
	}
	p.fails = 0
	switch {
	case more && last > 0:
		p.cursor = last
	case !more:
		p.cursor = 0
	}
	return 0
}

// acked takes ids out of the window and reports whether a pull is due: a
// page is open or a message was held back, and at most half of a window of
// size limit is in flight.
// gen is the reporter's flush count now.
func (p *pendingState) ack(ids []uint64, limit int, gen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireAckedLocked(gen)
	if w := p.w; w != nil {
		for _, id := range ids {
			if slices.Contains(w.inflight, id) {
				p.removeLocked(id)
				if len(w.acked) >= limit {
					w.acked = slices.Delete(w.acked, 0, 1)
				}
				w.acked = append(w.acked, id)
				w.ackGen = gen
			}
		}
	}
	p.releaseLocked()
	return (p.cursor != 0 || p.behind) && len(p.inflightLocked()) <= limit/2 && !p.pulling
}

// pullPending queues a pull of s's next page on the pending pool. It never
// blocks (it runs on register's flusher and on event loops): with the pool
// full, the pull is retried later like a failed one.
func (r *room) pullPending(s *session) {
	after, ok := s.pending.start()
	if !ok {
		return
	}
	if !r.pulls.single.Load() {
		// Batched with the other pulls of this flush window (pending_batch.go).
		if !r.pulls.add(s, after) {
			r.retryPending(s, s.pending.done(0, false, errPullShed))
		}
		return
	}
	if err := r.pending.Submit(func() { r.deliverPending(s, after) }); err != nil {
		r.m.poolRejected.WithLabelValues("pending").Inc()
		r.log.Debug("room: pending pull deferred; pool full", "conn", s.id)
		r.retryPending(s, s.pending.done(0, false, err))
	}
}

func (r *room) deliverPending(s *session, after uint64) {
	limit := r.cfg.maxInflight()
	ctx, cancel := context.WithTimeout(r.connCtx, grpcconn.DefaultCallTimeout)
	rep, err := r.saver.Pending(ctx, &internalpb.PendingRequest{
		App: s.key.app, User: s.key.user, Device: s.key.device, Limit: uint32(limit), AfterId: after,
	})
	cancel()
	if err != nil {
		r.m.peerErrors.WithLabelValues("Saver.Pending").Inc()
		r.log.Debug("room: pending pull failed", "conn", s.id, "err", err)
		r.retryPending(s, s.pending.done(0, false, err))
		return
	}
	r.applyPending(s, rep.GetMessages(), limit)
}

// applyPending writes one page of pulled messages to s (a page asked for
// with limit) and pages on when it is due.
func (r *room) applyPending(s *session, msgs []*internalpb.Message, limit int) {
	more := len(msgs) == limit
	var last uint64
	now := time.Now()
loop:
	for _, m := range msgs {
		id, qos1 := m.GetId(), m.GetQos() == 1
		if expired(m, now) {
			last = id
			continue
		}
		if qos1 {
			switch s.pending.admit(id, limit) {
			case admitDuplicate:
				last = id
				continue
			case admitFull:
				more = true
				break loop
			}
		}
		frame, err := pushFrame(m)
		if err == nil {
			// Saver counted these as delivered when it returned them.
			err = s.send(protocol.OpPush, frame)
			if err != nil {
				if qos1 {
					s.pending.forget(id)
				}
				break // the connection is closing
			}
			r.m.pushes.Inc()
		} else if qos1 {
			s.pending.forget(id)
		}
		last = id
	}
	s.pending.done(last, more, nil)
	// A page can send nothing new (every message already in flight, or
	// acked with the report still on its way to saver) and leave the
	// window empty: no ack would then come to pull the next page, and the
	// rest of the backlog would wait for the next login. Page on at once.
	if s.pending.due(limit) {
		r.pullPending(s)
	}
}

// retryPending schedules retry number n of a failed pull while s lives.
func (r *room) retryPending(s *session, n int) {
	if n == 0 || n > len(pendingRetryDelays) {
		return
	}
	d := pendingRetryDelays[n-1]
	d += time.Duration(rand.Int64N(int64(float64(d)*pendingRetryJitter) + 1))
	r.later.After(d, func() {
		if !s.has(flagClosed) && r.connCtx.Err() == nil {
			r.pullPending(s)
		}
	})
}

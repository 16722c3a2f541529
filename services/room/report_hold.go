package main

import (
	"sync"
	"time"
)

// Most QoS 1 pushes are acked within a round trip of their delivery. A
// delivery reported on its own costs saver an UPDATE of the message's row
// (and MariaDB a commit) moments before the ACK deletes that row; reported
// in the same Report as the ACK it costs nothing (saver counts it into the
// outcome: report_batch.go). So the room holds each delivery report for
// up to deliveredHold (-report-hold): an ACK arriving meanwhile takes it
// along, and only the deliveries of messages still unacked then are
// reported alone.
//
// Nothing depends on the delivered mark sooner: center's redelivery sweep
// only takes messages unreported for 3 s (center redeliverMinAge), and a
// report lost with a killed room only makes the sweep send the message
// again, which the SDK drops as a duplicate.
const (
	deliveredHold = 250 * time.Millisecond
	// holdTick is the shortest gap between two releases of expired
	// deliveries: under steady load a release per delivery would be a
	// timer per push.
	holdTick = 20 * time.Millisecond
	// maxHeldDeliveries bounds the held messages (with the acked ones
	// still waiting for their turn in the release order); beyond it
	// deliveries are reported at once, as without the hold.
	maxHeldDeliveries = defaultBatchQueue
)

// heldDelivery is the delivery report of one message waiting for its ACK.
type heldDelivery struct {
	app, user string
	at        int64  // monoNanos of the first delivery
	n         uint32 // deliveries of the message held (one per connection it went to)
}

// heldRef orders held messages by delivery time for their release.
type heldRef struct {
	id uint64
	at int64
}

// deliveryHold holds delivery reports for deliveredHold (see above). It
// hands reports on through release (the report batcher's Add, which never
// blocks), always a message's deliveries before its ACK.
type deliveryHold struct {
	hold, tick time.Duration
	bound      int
	release    func(reportItem)
	// folded counts delivery reports that went out with their ACK.
	folded func(n int)
	// heldGauge, when set, is told how many messages are held after every
	// change (the pushgw_room_deliveries_held gauge).
	heldGauge func(n int)

	mu    sync.Mutex
	held  map[uint64]heldDelivery
	order []heldRef // delivery order; entries whose message left held are skipped
	head  int
	armed bool // a release is scheduled
	timer *time.Timer
	// closed: Close released everything; reports pass straight through.
	closed bool
}

func newDeliveryHold(hold, tick time.Duration, bound int, release func(reportItem), folded func(int)) *deliveryHold {
	h := &deliveryHold{hold: hold, tick: tick, bound: bound, release: release, folded: folded,
		held: map[uint64]heldDelivery{}}
	h.timer = time.AfterFunc(time.Hour, h.expire)
	h.timer.Stop()
	return h
}

// Delivered holds the delivery of message id to user of app.
func (h *deliveryHold) Delivered(app, user string, id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e, ok := h.held[id]; ok && e.app == app && e.user == user {
		e.n++
		h.held[id] = e
		return
	}
	if h.closed || h.hold <= 0 || len(h.order)-h.head >= h.bound {
		h.release(reportItem{app: app, user: user, id: id})
		return
	}
	if _, ok := h.held[id]; ok {
		// Another user's message of that id (ids are unique, so only a
		// test does this): report it rather than keep two.
		h.release(reportItem{app: app, user: user, id: id})
		return
	}
	now := monoNanos(time.Now())
	h.held[id] = heldDelivery{app: app, user: user, at: now, n: 1}
	h.order = append(h.order, heldRef{id: id, at: now})
	h.changedLocked()
	if !h.armed {
		h.armed = true
		h.timer.Reset(h.hold)
	}
}

// Acked reports the ACK of message id by user of app, with its held
// deliveries ahead of it. An ACK naming another user's message leaves that
// delivery held: a client acks only what it was sent.
func (h *deliveryHold) Acked(app, user string, id uint64) {
	h.mu.Lock()
	if e, ok := h.held[id]; ok && e.app == app && e.user == user {
		delete(h.held, id)
		for range e.n {
			h.release(reportItem{app: app, user: user, id: id})
		}
		h.folded(int(e.n))
		h.changedLocked()
	}
	h.mu.Unlock()
	h.release(reportItem{acked: true, app: app, user: user, id: id})
}

// expire releases the deliveries held for hold or longer and schedules
// the next release.
func (h *deliveryHold) expire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed = false
	if h.closed {
		return
	}
	h.releaseLocked(monoNanos(time.Now()) - int64(h.hold))
	if h.head < len(h.order) {
		wait := time.Duration(h.order[h.head].at + int64(h.hold) - monoNanos(time.Now()))
		h.armed = true
		h.timer.Reset(max(wait, h.tick))
	}
}

// releaseLocked releases the deliveries made at or before cutoff.
func (h *deliveryHold) releaseLocked(cutoff int64) {
	for h.head < len(h.order) && h.order[h.head].at <= cutoff {
		r := h.order[h.head]
		h.head++
		if e, ok := h.held[r.id]; ok && e.at == r.at {
			delete(h.held, r.id)
			for range e.n {
				h.release(reportItem{app: e.app, user: e.user, id: r.id})
			}
		}
	}
	h.changedLocked()
	switch {
	case h.head == len(h.order):
		// Drained: start over, and let a burst's big array go.
		h.head = 0
		if cap(h.order) > 4*batchQueueMinCap {
			h.order = nil
		} else {
			h.order = h.order[:0]
		}
	case h.head > len(h.order)/2:
		n := copy(h.order, h.order[h.head:])
		clear(h.order[n:])
		h.order, h.head = h.order[:n], 0
	}
}

// changedLocked reports the number of held messages.
func (h *deliveryHold) changedLocked() {
	if h.heldGauge != nil {
		h.heldGauge(len(h.held))
	}
}

// Len returns the messages whose deliveries are held.
func (h *deliveryHold) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

// Close releases every held delivery; later ones pass straight through.
// The room closes it before the report batcher, which then flushes them.
func (h *deliveryHold) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.timer.Stop()
	h.releaseLocked(1<<63 - 1)
}

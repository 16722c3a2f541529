package main

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// eventJSON is one event as the webhook receives it (docs/OPERATIONS.md,
// "Callbacks and receipts"). Empty fields are left out.
type eventJSON struct {
	EventID       string  `json:"event_id"`
	Type          string  `json:"type"`
	App           string  `json:"app"`
	User          string  `json:"user"`
	Device        string  `json:"device,omitempty"`
	Platform      string  `json:"platform,omitempty"`
	RoomID        string  `json:"room_id,omitempty"`
	SessionID     string  `json:"session_id,omitempty"`
	Reason        string  `json:"reason,omitempty"`
	MessageID     string  `json:"message_id,omitempty"`
	Outcome       string  `json:"outcome,omitempty"`
	DeliveryCount *uint32 `json:"delivery_count,omitempty"`
	AtMs          int64   `json:"at_ms"`
}

// eventID is the webhook's de-duplication id of an outbox event: the same
// in every attempt and every coordinator.
func eventID(e *internalpb.Event) string { return "ev-" + strconv.FormatUint(e.GetSeq(), 10) }

func toJSON(e *internalpb.Event) eventJSON {
	_, typ := eventName(e.GetKind())
	j := eventJSON{EventID: eventID(e), Type: typ, App: e.GetApp(), User: e.GetUser(), Device: e.GetDevice(),
		Platform: e.GetPlatform(), RoomID: e.GetRoomId(), Reason: e.GetReason(), Outcome: e.GetOutcome(), AtMs: e.GetAtMs()}
	if e.GetSessionId() != 0 {
		j.SessionID = strconv.FormatUint(e.GetSessionId(), 10)
	}
	if e.GetKind() == internalpb.EventKind_EVENT_KIND_RECEIPT {
		j.MessageID = strconv.FormatUint(e.GetMessageId(), 10)
		n := e.GetDeliveryCount()
		j.DeliveryCount = &n
	}
	return j
}

// eventsBody is the POST body: the event itself, or {"events":[…]} for an
// app that takes batches (webhook_batch > 1), even when one is ready.
func eventsBody(batched bool, evs []*internalpb.Event) []byte {
	if !batched {
		b, _ := json.Marshal(toJSON(evs[0]))
		return b
	}
	out := struct {
		Events []eventJSON `json:"events"`
	}{Events: make([]eventJSON, len(evs))}
	for i, e := range evs {
		out.Events[i] = toJSON(e)
	}
	b, _ := json.Marshal(out)
	return b
}

// pos is a chain being posted and how far it got.
type pos struct {
	c    *chain
	next int
}

// deliver posts the chains of one app in order: each POST takes up to the
// app's batch of events, whole runs of each chain in turn. A failed POST
// ends every chain it carried: the chain's first event in it is scheduled
// again after a back-off, the rest released (they stay behind it in
// MySQL); the app is marked down for the back-off, so the chains after it
// are deferred without a POST.
func (d *eventDelivery) deliver(ctx context.Context, app appconfig.App, ok bool, q *appEvents, batch []*chain) {
	settles := map[uint64]*settlement{}
	settle := func(c *chain) *settlement {
		s := settles[c.token]
		if s == nil {
			s = &settlement{}
			settles[c.token] = s
		}
		return s
	}
	defer func() {
		for token, s := range settles {
			d.finish(token, s)
		}
	}()
	var active []*pos
	for _, c := range batch {
		if !ok {
			// The app went away while its events were queued.
			for _, e := range c.evs {
				settle(c).delivered = append(settle(c).delivered, e.GetSeq())
			}
			d.m.events.WithLabelValues("dropped").Add(float64(len(c.evs)))
			continue
		}
		active = append(active, &pos{c: c})
	}
	limit := app.EventBatch()
	for len(active) > 0 {
		now := d.now()
		if ctx.Err() != nil {
			for _, p := range active {
				settle(p.c).release(p.c.evs[p.next:])
			}
			return
		}
		if down := q.downUntil.Load(); now.UnixMilli() < down {
			for _, p := range active {
				d.deferChain(settle(p.c), p, down)
			}
			return
		}
		// Take runs of events for one POST; a chain whose lease is about
		// to end is released instead (another coordinator may lease it).
		var posted []*pos
		var evs []*internalpb.Event
		var runs []int
		keep := active[:0]
		for _, p := range active {
			if now.After(p.c.until.Add(-leaseMargin)) {
				settle(p.c).release(p.c.evs[p.next:])
				d.m.events.WithLabelValues("expired_lease").Add(float64(len(p.c.evs) - p.next))
				continue
			}
			keep = append(keep, p)
			if len(evs) >= limit {
				continue
			}
			n := min(limit-len(evs), len(p.c.evs)-p.next)
			evs = append(evs, p.c.evs[p.next:p.next+n]...)
			posted, runs = append(posted, p), append(runs, n)
		}
		active = keep
		if len(evs) == 0 {
			return
		}
		_, err := d.hook.post(ctx, app, eventID(evs[0]), eventsBody(app.Batched(), evs))
		if err == nil {
			q.failures.Store(0)
			q.downUntil.Store(0)
			for i, p := range posted {
				for _, e := range p.c.evs[p.next : p.next+runs[i]] {
					settle(p.c).delivered = append(settle(p.c).delivered, e.GetSeq())
				}
				p.next += runs[i]
			}
			d.m.events.WithLabelValues("delivered").Add(float64(len(evs)))
		} else {
			f := q.failures.Add(1)
			q.downUntil.Store(now.Add(d.retryDelay(uint32(f))).UnixMilli())
			d.log.Warn("coordinator: event webhook failed; events wait in the outbox", "app", app.Name, "events", len(evs), "first", eventID(evs[0]), "err", err)
			for _, p := range posted {
				head := p.c.evs[p.next]
				settle(p.c).failed = append(settle(p.c).failed, &internalpb.EventRetry{Seq: head.GetSeq(),
					NextAtMs: now.Add(d.retryDelay(head.GetAttempts() + 1)).UnixMilli()})
				settle(p.c).release(p.c.evs[p.next+1:])
				p.next = len(p.c.evs)
			}
			d.m.events.WithLabelValues("retried").Add(float64(len(evs)))
		}
		keep = active[:0]
		for _, p := range active {
			if p.next < len(p.c.evs) {
				keep = append(keep, p)
			}
		}
		active = keep
	}
}

// deferChain puts off the rest of p's chain to when its app's webhook is
// tried again, without counting an attempt.
func (d *eventDelivery) deferChain(s *settlement, p *pos, until int64) {
	rest := p.c.evs[p.next:]
	s.failed = append(s.failed, &internalpb.EventRetry{Seq: rest[0].GetSeq(), NextAtMs: until, Deferred: true})
	s.release(rest[1:])
	d.m.events.WithLabelValues("deferred").Add(float64(len(rest)))
	p.next = len(p.c.evs)
}

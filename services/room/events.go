package main

import (
	"context"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Online/offline callbacks (docs/OPERATIONS.md, "Callbacks and receipts"):
// the room reports each authenticated connection's start and end to
// saver's outbox, in batches, for the apps that subscribe. The event loop
// only queues (batcher.Add never blocks); a full queue sheds the event and
// counts it in pushgw_room_batch_dropped_total{batch="events"}.

// closeReason says why a session ended; the first reason set wins, and a
// session closed for no recorded reason ends "closed" (the client left or
// the connection broke). Code that closes sessions for a new reason adds
// a constant here and its name in String.
type closeReason uint32

const (
	closeUnset closeReason = iota
	closeClosed
	closeTimedOut // no frame within the heartbeat deadline
	closeKicked   // the business (or an operator) kicked it
	closeReplaced // the same device logged in again
	closeDrained  // the room was drained (redirected elsewhere)
)

func (c closeReason) String() string {
	switch c {
	case closeTimedOut:
		return "timed_out"
	case closeKicked:
		return "kicked"
	case closeReplaced:
		return "replaced"
	case closeDrained:
		return "drained"
	}
	return "closed"
}

// closeReasonOf maps a KICK code to a reason.
func closeReasonOf(code protocol.Code) closeReason {
	if code == protocol.CodeReplaced {
		return closeReplaced
	}
	return closeKicked
}

// setCloseReason records why s is closing unless a reason is already set.
func (s *session) setCloseReason(r closeReason) {
	s.closeWhy.CompareAndSwap(uint32(closeUnset), uint32(r))
}

// eventQueue bounds the events waiting for a flush to saver.
const eventQueue = 16 << 10

// eventReporter batches online/offline events to saver. A nil reporter
// (tests, or no saver events client) reports nothing.
type eventReporter struct {
	r          *room
	saver      internalpb.SaverEventsClient
	subscribes func(app, event string) bool
	b          *batcher[*internalpb.Event]
}

func newEventReporter(r *room, saver internalpb.SaverEventsClient, subscribes func(app, event string) bool) *eventReporter {
	if saver == nil || subscribes == nil {
		return nil
	}
	e := &eventReporter{r: r, saver: saver, subscribes: subscribes}
	drop := r.m.batchDropped.WithLabelValues("events")
	e.b = newBatcher(defaultBatchSize, defaultBatchDelay, eventQueue, e.flush, drop.Inc)
	return e
}

func (e *eventReporter) event(s *session, kind internalpb.EventKind, sub string, reason closeReason) {
	if e == nil || !s.isAuthed() || !e.subscribes(s.key.app, sub) {
		return
	}
	ev := &internalpb.Event{Kind: kind, App: s.key.app, User: s.key.user, Device: s.key.device, Platform: s.platformName(),
		RoomId: e.r.instance, SessionId: s.regConnID(), AtMs: time.Now().UnixMilli()}
	if kind == internalpb.EventKind_EVENT_KIND_OFFLINE {
		ev.Reason = reason.String()
	}
	e.b.Add(ev)
}

// online reports an authenticated session; called once, after AUTH.
func (e *eventReporter) online(s *session) {
	e.event(s, internalpb.EventKind_EVENT_KIND_ONLINE, appconfig.EventOnline, closeUnset)
}

// offline reports the end of an authenticated session, from OnClose.
func (e *eventReporter) offline(s *session) {
	e.event(s, internalpb.EventKind_EVENT_KIND_OFFLINE, appconfig.EventOffline, closeReason(s.closeWhy.Load()))
}

func (e *eventReporter) flush(evs []*internalpb.Event) {
	req := &internalpb.RecordEventsRequest{Events: evs}
	err := retry(reportAttempts, reportBackoff, e.r.life.Done(), func() error {
		ctx, cancel := context.WithTimeout(e.r.life, grpcconn.DefaultCallTimeout)
		defer cancel()
		_, err := e.saver.RecordEvents(ctx, req)
		if err != nil {
			e.r.m.peerErrors.WithLabelValues("SaverEvents.RecordEvents").Inc()
		}
		return err
	})
	if err != nil {
		e.r.m.batchFailed.WithLabelValues("events").Inc()
		e.r.log.Warn("room: online/offline events lost: saver did not take them", "events", len(evs), "err", err)
	}
}

// Close flushes what is queued within ctx.
func (e *eventReporter) Close(ctx context.Context) error {
	if e == nil {
		return nil
	}
	return e.b.Close(ctx)
}

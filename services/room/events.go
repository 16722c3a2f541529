package main

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Online/offline callbacks (docs/OPERATIONS.md, "Callbacks and receipts"):
// the room reports each authenticated connection's start and end to
// saver's outbox, in batches, for the apps that subscribe. The event loop
// only queues (batcher.Add never blocks); a batch saver refuses is held
// and retried (eventHold), and a full queue sheds the event and counts it
// in pushgw_room_batch_dropped_total{batch="events"}.

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

// eventHold bounds the online/offline events the room holds for saver:
// queued for a flush, plus the batch being retried. A business must lose
// no callback to a saver restart or a MySQL blip, so a refused batch is
// retried until saver takes it; while it waits, new events queue behind it
// (one flusher, so per-user order holds) up to this many. Beyond it an
// event is shed, counted in pushgw_room_batch_dropped_total{batch="events"}
// and logged: memory stays bounded whatever the outage's length.
const eventHold = 16 << 10

// Back-off between tries of a batch saver refused: doubling from the first
// up to the cap, so a returning saver is noticed within eventRetryMax.
const (
	eventRetryFirst = 50 * time.Millisecond
	eventRetryMax   = 5 * time.Second
)

// eventReporter batches online/offline events to saver. A nil reporter
// (tests, or no saver events client) reports nothing.
type eventReporter struct {
	r          *room
	saver      internalpb.SaverEventsClient
	subscribes func(app, event string) bool
	b          *batcher[*internalpb.Event]
	// giveUp ends the retries (and the call in flight) when Close's
	// deadline passes or the room's life ends; what is held then is lost.
	giveUpCtx context.Context
	giveUp    context.CancelFunc
	// shed counts events shed since the last log line about it (Add runs
	// on event loops, which must not log per event).
	shed atomic.Int64
	// retryMax caps the back-off (eventRetryMax; tests shorten it).
	retryMax time.Duration
}

func newEventReporter(r *room, saver internalpb.SaverEventsClient, subscribes func(app, event string) bool) *eventReporter {
	if saver == nil || subscribes == nil {
		return nil
	}
	e := &eventReporter{r: r, saver: saver, subscribes: subscribes, retryMax: eventRetryMax}
	e.giveUpCtx, e.giveUp = context.WithCancel(r.life)
	drop := r.m.batchDropped.WithLabelValues("events")
	e.b = newBatcher(defaultBatchSize, defaultBatchDelay, eventHold, e.flush, func() {
		drop.Inc()
		e.shed.Add(1)
	})
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

// flush hands evs to saver, retrying with capped back-off until saver
// takes them or the reporter gives up. It runs on the batcher's single
// goroutine: while it retries, later events wait in the queue behind evs,
// so none overtakes an earlier one of its user.
func (e *eventReporter) flush(evs []*internalpb.Event) {
	req := &internalpb.RecordEventsRequest{Events: evs}
	wait := eventRetryFirst
	for try := 1; ; try++ {
		if e.giveUpCtx.Err() != nil {
			e.lost(len(evs), e.giveUpCtx.Err())
			return
		}
		ctx, cancel := context.WithTimeout(e.giveUpCtx, grpcconn.DefaultCallTimeout)
		_, err := e.saver.RecordEvents(ctx, req)
		cancel()
		if err == nil {
			if try > 1 {
				e.r.log.Info("room: saver took held online/offline events", "events", len(evs), "tries", try)
			}
			e.logShed()
			return
		}
		e.r.m.peerErrors.WithLabelValues("SaverEvents.RecordEvents").Inc()
		if status.Code(err) == codes.InvalidArgument {
			// The same batch would be refused again: holding it would stop
			// every later event behind it for good.
			e.lost(len(evs), err)
			return
		}
		if try == 1 || wait == e.retryMax {
			e.r.log.Warn("room: saver refused online/offline events; holding and retrying",
				"events", len(evs), "queued", e.b.Len(), "try", try, "next_in", wait, "err", err)
		}
		e.logShed()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-e.giveUpCtx.Done():
			t.Stop()
		}
		wait = min(wait*2, e.retryMax)
	}
}

// lost counts and logs a batch the room could not hand to saver.
func (e *eventReporter) lost(n int, err error) {
	e.r.m.batchFailed.WithLabelValues("events").Inc()
	e.r.log.Warn("room: online/offline events lost: saver did not take them", "events", n, "err", err)
}

// logShed logs the events shed since the last call, if any.
func (e *eventReporter) logShed() {
	if n := e.shed.Swap(0); n > 0 {
		e.r.log.Warn("room: online/offline events shed: too many held for saver", "shed", n, "hold", eventHold)
	}
}

// Close flushes what is held within ctx (saver refusing, it keeps retrying
// until then); past ctx it gives up, and what is still held is lost.
func (e *eventReporter) Close(ctx context.Context) error {
	if e == nil {
		return nil
	}
	err := e.b.Close(ctx)
	if err != nil {
		e.giveUp()
		// The flusher stops at once now: bound the wait on it anyway.
		t := time.NewTimer(grpcconn.DefaultCallTimeout)
		defer t.Stop()
		select {
		case <-e.b.done:
		case <-t.C:
		}
	}
	e.giveUp()
	e.logShed()
	return err
}

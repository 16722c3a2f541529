package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

func (f *fixture) events(t *testing.T) *eventsServer {
	t.Helper()
	return newEventsServer(f.srv, prometheus.NewRegistry())
}

func leaseAll(t *testing.T, es *eventsServer, limit uint32) *internalpb.LeaseEventsReply {
	t.Helper()
	r, err := es.LeaseEvents(callCtx(t), &internalpb.LeaseEventsRequest{Limit: limit, LeaseMs: 30_000})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func eventSeqs(evs []*internalpb.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.GetSeq()
	}
	return out
}

// Receipts are written with the outcome, once, for acked, expired and
// dead messages that asked for one, and for no other.
func TestReceiptsWithOutcomes(t *testing.T) {
	f := newFixture(t, 2)
	es := f.events(t)
	acked := msg("app1", "rita", "", 0)
	acked.Receipt = true
	plain := msg("app1", "rita", "", 0)
	expired := msg("app1", "sam", "", time.Now().Add(time.Second).UnixMilli())
	expired.Receipt = true
	dead := msg("app1", "tom", "", 0)
	dead.Receipt = true
	f.store(t, acked, plain, expired, dead)
	f.ack(t, acked, plain)
	f.ack(t, acked) // a repeated ack finishes nothing, so writes no receipt
	f.sweep.sweep(context.Background(), time.Now().Add(2*time.Second))
	for i := 0; i < 3; i++ {
		f.pending(t, "app1", "tom", "")
	}
	r := leaseAll(t, es, 100)
	got := map[uint64]string{}
	for _, e := range r.GetEvents() {
		if e.GetKind() != internalpb.EventKind_EVENT_KIND_RECEIPT {
			t.Fatalf("kind %s", e.GetKind())
		}
		if _, dup := got[e.GetMessageId()]; dup {
			t.Fatalf("two receipts for %d", e.GetMessageId())
		}
		got[e.GetMessageId()] = e.GetOutcome()
	}
	want := map[uint64]string{acked.GetId(): "acked", expired.GetId(): "expired", dead.GetId(): "dead"}
	if len(got) != len(want) {
		t.Fatalf("receipts %v, want %v", got, want)
	}
	for id, o := range want {
		if got[id] != o {
			t.Fatalf("receipt of %d: %q, want %q (all: %v)", id, got[id], o, got)
		}
	}
	n, err := es.FinishEvents(callCtx(t), &internalpb.FinishEventsRequest{Token: r.GetToken(), Delivered: eventSeqs(r.GetEvents())})
	if err != nil || n.GetSettled() != 3 {
		t.Fatalf("finish: %v %v", n, err)
	}
	if left, _ := es.db.backlog(context.Background()); left != 0 {
		t.Fatalf("%d events left after delivery", left)
	}
}

func onOff(user, device string, kind internalpb.EventKind) *internalpb.Event {
	return &internalpb.Event{Kind: kind, App: "app1", User: user, Device: device, RoomId: "room-1", AtMs: time.Now().UnixMilli()}
}

// An event is leased only with every older event of its user: a failed
// head holds its user's later events back, other users go on, and two
// leases never share a user.
func TestLeaseOrderPerUser(t *testing.T) {
	f := newFixture(t, 10)
	es := f.events(t)
	on, off := internalpb.EventKind_EVENT_KIND_ONLINE, internalpb.EventKind_EVENT_KIND_OFFLINE
	_, err := es.RecordEvents(callCtx(t), &internalpb.RecordEventsRequest{Events: []*internalpb.Event{
		onOff("ann", "d1", on), onOff("bob", "d1", on), onOff("ann", "d1", off), onOff("bob", "d1", off), onOff("ann", "d2", on),
	}})
	if err != nil {
		t.Fatal(err)
	}
	first := leaseAll(t, es, 100)
	if len(first.GetEvents()) != 5 {
		t.Fatalf("leased %d of 5", len(first.GetEvents()))
	}
	if again := leaseAll(t, es, 100); len(again.GetEvents()) != 0 {
		t.Fatalf("leased events are leased again: %v", again.GetEvents())
	}
	var ann, bob []uint64
	for _, e := range first.GetEvents() {
		if e.GetUser() == "ann" {
			ann = append(ann, e.GetSeq())
		} else {
			bob = append(bob, e.GetSeq())
		}
	}
	// ann's head fails (retry in an hour), the rest of ann's events are
	// released; bob's are delivered.
	_, err = es.FinishEvents(callCtx(t), &internalpb.FinishEventsRequest{Token: first.GetToken(), Delivered: bob,
		Failed:   []*internalpb.EventRetry{{Seq: ann[0], NextAtMs: time.Now().Add(time.Hour).UnixMilli()}},
		Released: ann[1:]})
	if err != nil {
		t.Fatal(err)
	}
	if r := leaseAll(t, es, 100); len(r.GetEvents()) != 0 {
		t.Fatalf("events behind a failed head were leased: %v", r.GetEvents())
	}
	// A stale token settles nothing.
	if r, err := es.FinishEvents(callCtx(t), &internalpb.FinishEventsRequest{Token: first.GetToken(), Delivered: ann}); err != nil || r.GetSettled() != 0 {
		t.Fatalf("stale token settled %v (%v)", r, err)
	}
	// Once the head is due again, ann's three come in order, attempts kept.
	if _, err := f.sqldb.Exec("UPDATE events SET next_at_ms = 0"); err != nil {
		t.Fatal(err)
	}
	_, err = es.RecordEvents(callCtx(t), &internalpb.RecordEventsRequest{Events: []*internalpb.Event{onOff("bob", "d1", on)}})
	if err != nil {
		t.Fatal(err)
	}
	r := leaseAll(t, es, 2) // a limit cuts ann's chain, never skips inside it
	if got := eventSeqs(r.GetEvents()); !slices.Equal(got, ann[:2]) {
		t.Fatalf("leased %v, want ann's first two %v", got, ann[:2])
	}
	if r.GetEvents()[0].GetAttempts() != 1 {
		t.Fatalf("attempts of the failed head: %d", r.GetEvents()[0].GetAttempts())
	}
	r2 := leaseAll(t, es, 100)
	if len(r2.GetEvents()) != 1 || r2.GetEvents()[0].GetUser() != "bob" {
		t.Fatalf("second lease: %v (ann's third must wait behind the first lease)", r2.GetEvents())
	}
}

func TestRecordEventsRejectsBadInput(t *testing.T) {
	f := newFixture(t, 10)
	es := f.events(t)
	for name, e := range map[string]*internalpb.Event{
		"receipt from a room": {Kind: internalpb.EventKind_EVENT_KIND_RECEIPT, App: "a", User: "u", AtMs: 1},
		"no user":             {Kind: internalpb.EventKind_EVENT_KIND_ONLINE, App: "a", AtMs: 1},
		"no time":             {Kind: internalpb.EventKind_EVENT_KIND_ONLINE, App: "a", User: "u"},
		"long reason":         {Kind: internalpb.EventKind_EVENT_KIND_OFFLINE, App: "a", User: "u", AtMs: 1, Reason: string(make([]byte, 64))},
	} {
		_, err := es.RecordEvents(callCtx(t), &internalpb.RecordEventsRequest{Events: []*internalpb.Event{e}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := es.LeaseEvents(callCtx(t), &internalpb.LeaseEventsRequest{Limit: 0, LeaseMs: 30_000}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("lease limit 0: %v", err)
	}
}

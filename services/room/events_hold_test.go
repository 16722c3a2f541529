package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// refusingSaver is a SaverEvents server on a real socket that refuses the
// first refuse calls (Unavailable, as a saver whose MySQL is down does)
// and then records what it is given, in arrival order.
type refusingSaver struct {
	internalpb.UnimplementedSaverEventsServer
	mu      sync.Mutex
	refuse  int // calls still to refuse; <0: refuse for ever
	calls   int
	got     []*internalpb.Event
	refused int
}

func (s *refusingSaver) RecordEvents(_ context.Context, req *internalpb.RecordEventsRequest) (*internalpb.RecordEventsReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.refuse != 0 {
		if s.refuse > 0 {
			s.refuse--
		}
		s.refused++
		return nil, status.Error(codes.Unavailable, "outbox down")
	}
	s.got = append(s.got, req.GetEvents()...)
	return &internalpb.RecordEventsReply{}, nil
}

func (s *refusingSaver) snapshot() (got []*internalpb.Event, refused int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*internalpb.Event(nil), s.got...), s.refused
}

func (s *refusingSaver) setRefuse(n int) {
	s.mu.Lock()
	s.refuse = n
	s.mu.Unlock()
}

// startRefusingSaver serves s on a loopback socket and returns a client.
func startRefusingSaver(t *testing.T, s *refusingSaver) internalpb.SaverEventsClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	internalpb.RegisterSaverEventsServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); gs.Stop() })
	return internalpb.NewSaverEventsClient(cc)
}

// testEventReporter is a room's event reporter fed straight through its
// batcher (the path event() takes), with a short back-off cap.
func testEventReporter(t *testing.T, saver internalpb.SaverEventsClient) (*eventReporter, *metrics) {
	m := newMetrics(prometheus.NewRegistry())
	r := &room{log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: m, life: context.Background(), instance: "room-t"}
	e := newEventReporter(r, saver, func(string, string) bool { return true })
	e.retryMax = 100 * time.Millisecond
	return e, m
}

func testEvent(user string, kind internalpb.EventKind, at int64) *internalpb.Event {
	return &internalpb.Event{Kind: kind, App: "app", User: user, Device: "d", RoomId: "room-t", SessionId: uint64(at), AtMs: at}
}

// A batch saver refuses is held and retried until saver takes it; events
// that come meanwhile queue behind it, and every event arrives once, in
// order.
func TestEventsHeldWhileSaverRefuses(t *testing.T) {
	sv := &refusingSaver{refuse: 6}
	e, m := testEventReporter(t, startRefusingSaver(t, sv))
	defer e.Close(context.Background())
	const users, perUser = 5, 40
	var at int64
	for i := 0; i < perUser; i++ {
		for u := 0; u < users; u++ {
			at++
			kind := internalpb.EventKind_EVENT_KIND_ONLINE
			if i%2 == 1 {
				kind = internalpb.EventKind_EVENT_KIND_OFFLINE
			}
			if !e.b.Add(testEvent(fmt.Sprint("u", u), kind, at)) {
				t.Fatal("an event was shed under the hold bound")
			}
		}
		if i == 0 {
			// The first batch is in flight and refused before the rest come.
			waitFor(t, "first refusal", func() bool { _, r := sv.snapshot(); return r > 0 })
		}
	}
	waitFor(t, "all events recorded", func() bool { got, _ := sv.snapshot(); return len(got) >= users*perUser })
	got, refused := sv.snapshot()
	if refused != 6 || len(got) != users*perUser {
		t.Fatalf("refused %d (want 6), recorded %d (want %d)", refused, len(got), users*perUser)
	}
	for i, ev := range got {
		if ev.GetAtMs() != int64(i+1) {
			t.Fatalf("event %d has at_ms %d: lost, doubled or reordered", i, ev.GetAtMs())
		}
	}
	if f := counterOf(t, m.batchFailed.WithLabelValues("events")); f != 0 {
		t.Fatalf("%v batches counted lost", f)
	}
	if d := counterOf(t, m.batchDropped.WithLabelValues("events")); d != 0 {
		t.Fatalf("%v events shed", d)
	}
}

// While saver refuses for good, the room holds at most eventHold events
// (plus the batch in flight) and sheds the rest, counted; Close gives up
// at its deadline and counts what was held as lost. When saver takes
// events again, the held ones arrive in order, before later ones.
func TestEventsHoldIsBounded(t *testing.T) {
	sv := &refusingSaver{refuse: -1}
	e, m := testEventReporter(t, startRefusingSaver(t, sv))
	var at int64
	add := func() bool { at++; return e.b.Add(testEvent("u", internalpb.EventKind_EVENT_KIND_ONLINE, at)) }
	add()
	waitFor(t, "first refusal", func() bool { _, r := sv.snapshot(); return r > 0 })
	const over = 1000
	shed := 0
	for i := 0; i < eventHold+over; i++ {
		if !add() {
			shed++
		}
	}
	if e.b.Len() > eventHold {
		t.Fatalf("%d events queued, bound %d", e.b.Len(), eventHold)
	}
	if shed < over {
		t.Fatalf("%d shed, want at least %d", shed, over)
	}
	if d := counterOf(t, m.batchDropped.WithLabelValues("events")); int(d) != shed {
		t.Fatalf("dropped metric %v, shed %d", d, shed)
	}

	// Saver returns: what was held arrives, in order, nothing doubled.
	sv.setRefuse(0)
	held := int(at) - shed
	waitFor(t, "held events recorded", func() bool { got, _ := sv.snapshot(); return len(got) >= held })
	got, _ := sv.snapshot()
	if len(got) != held {
		t.Fatalf("recorded %d, held %d", len(got), held)
	}
	for i := 1; i < len(got); i++ {
		if got[i].GetAtMs() <= got[i-1].GetAtMs() {
			t.Fatalf("event %d (at %d) after %d: reordered or doubled", i, got[i].GetAtMs(), got[i-1].GetAtMs())
		}
	}

	// Saver refuses again; Close gives up at its deadline, counting the
	// held batch as lost instead of hanging.
	sv.setRefuse(-1)
	add()
	waitFor(t, "refused again", func() bool { _, r := sv.snapshot(); return r > 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.Close(ctx); err == nil {
		t.Fatal("Close with saver refusing reported everything flushed")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v past a 200ms deadline", took)
	}
	if f := counterOf(t, m.batchFailed.WithLabelValues("events")); f < 1 {
		t.Fatal("the held batch was not counted lost")
	}
}

func counterOf(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

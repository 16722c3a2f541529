package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/internal/proctest"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// switchRoom is a room whose one connection (conn 1) answers NOT_FOUND
// while it is off (its user is reconnecting), so center's live delivery
// fails for a passing reason and the message goes to the retrier. It
// records which message ids it accepted.
type switchRoom struct {
	internalpb.UnimplementedRoomServer
	mu       sync.Mutex
	off      bool
	accepted map[uint64]int
}

func (r *switchRoom) setOff(off bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.off = off
}

func (r *switchRoom) got(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted[id]
}

func (r *switchRoom) push(req *internalpb.RoomPushRequest) *internalpb.RoomPushReply {
	out := &internalpb.RoomPushReply{}
	for _, t := range req.GetTargets() {
		code := internalpb.ResultCode_RESULT_CODE_OK
		if r.off {
			code = internalpb.ResultCode_RESULT_CODE_NOT_FOUND
		} else {
			r.accepted[req.GetMessage().GetId()]++
		}
		out.Results = append(out.Results, &internalpb.TargetResult{ConnId: t.GetConnId(), Code: code})
	}
	return out
}

func (r *switchRoom) Push(_ context.Context, req *internalpb.RoomPushRequest) (*internalpb.RoomPushReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.push(req), nil
}

func (r *switchRoom) PushBatch(_ context.Context, req *internalpb.RoomPushBatchRequest) (*internalpb.RoomPushBatchReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := &internalpb.RoomPushBatchReply{}
	for _, p := range req.GetPushes() {
		out.Replies = append(out.Replies, r.push(p))
	}
	return out, nil
}

// retryCheckEnv is a center with the real saver (its own MariaDB database
// and Redis), a register that knows alice on conn 1 of room-a, and that
// room, switched off: every push to alice goes to the retrier.
func retryCheckEnv(t *testing.T) (*testEnv, *switchRoom, *proctest.Server) {
	t.Helper()
	e := newTestEnv(t)
	sv, _ := startRealSaver(t, e.cluster)
	p := &peers{}
	rm := &switchRoom{off: true, accepted: map[uint64]int{}}
	e.serveGRPC(discovery.ServiceRegister, "register-1", func(s *grpc.Server) { internalpb.RegisterRegisterServer(s, p) })
	addr := e.serveGRPC(discovery.ServiceRoom, "room-a", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, rm) })
	p.mu.Lock()
	p.sessions = []*internalpb.Session{{App: "app1", User: "alice", Device: "phone", RoomId: "room-a", RoomAddr: addr, ConnId: 1}}
	p.mu.Unlock()
	waitFor(t, "room to be discovered", func() bool {
		e.srv.rooms.mu.RLock()
		defer e.srv.rooms.mu.RUnlock()
		return e.srv.rooms.known[addr]
	})
	waitFor(t, "register and saver to be discovered", func() bool {
		return e.postJSON("/v1/push", `{"user":"nobody","payload":"x","qos":1}`).status == 200
	})
	return e, rm, sv
}

// push stores a QoS 1 message for alice and waits until its failed live
// delivery put it in the retrier.
func (e *testEnv) pushToRetrier(t *testing.T, body string) uint64 {
	t.Helper()
	r := e.postJSON("/v1/push", body)
	if r.status != 200 {
		t.Fatalf("push: %d %v", r.status, r.body)
	}
	id := parseID(t, r.body["id"].(string))
	waitFor(t, "the message to be queued for a retry", func() bool { return e.inRetrier(id) })
	return id
}

func (e *testEnv) inRetrier(id uint64) bool {
	e.srv.retry.mu.Lock()
	defer e.srv.retry.mu.Unlock()
	for _, it := range e.srv.retry.items {
		if it.m.GetId() == id {
			return true
		}
	}
	return false
}

// A message waiting in the retrier that a newer one with its collapse key
// replaced is never pushed live: the client sees only the newer one.
func TestRetrierSkipsCollapsed(t *testing.T) {
	e, rm, _ := retryCheckEnv(t)
	old := e.pushToRetrier(t, `{"user":"alice","payload":"score 1-0","qos":1,"collapse_key":"score"}`)
	newer := e.pushToRetrier(t, `{"user":"alice","payload":"score 2-0","qos":1,"collapse_key":"score"}`)
	rm.setOff(false) // alice is back
	waitLong(t, "the newer message delivered by the retrier", 15*time.Second, func() bool { return rm.got(newer) > 0 })
	waitLong(t, "the collapsed message to leave the retrier", 15*time.Second, func() bool { return !e.inRetrier(old) })
	if n := rm.got(old); n != 0 {
		t.Fatalf("collapsed message %d pushed live %d times", old, n)
	}
	if got := counterValue(e.srv.m.retrySkipped.WithLabelValues(skipCollapsed)); got != 1 {
		t.Fatalf("skipped{collapsed} = %v, want 1", got)
	}
}

// A message acked meanwhile (the client got it by its login pull) is not
// pushed again.
func TestRetrierSkipsAcked(t *testing.T) {
	e, rm, _ := retryCheckEnv(t)
	acked := e.pushToRetrier(t, `{"user":"alice","payload":"a","qos":1}`)
	waiting := e.pushToRetrier(t, `{"user":"alice","payload":"b","qos":1}`)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := e.srv.saver.Report(ctx, &internalpb.ReportRequest{Acked: []*internalpb.MessageRef{{App: "app1", User: "alice", Id: acked}}}); err != nil {
		t.Fatal(err)
	}
	rm.setOff(false)
	waitLong(t, "the unacked message delivered by the retrier", 15*time.Second, func() bool { return rm.got(waiting) > 0 })
	waitLong(t, "the acked message to leave the retrier", 15*time.Second, func() bool { return !e.inRetrier(acked) })
	if n := rm.got(acked); n != 0 {
		t.Fatalf("acked message %d pushed again %d times", acked, n)
	}
	if got := counterValue(e.srv.m.retrySkipped.WithLabelValues(skipAcked)); got != 1 {
		t.Fatalf("skipped{acked} = %v, want 1", got)
	}
}

// With saver down the retrier cannot know whether a newer message with the
// same collapse key replaced one it holds: that one waits for saver. A
// message without a collapse key is pushed unchecked (its client drops it
// by id if it already had it), so a saver outage holds no live retry.
func TestRetrierWaitsForSaver(t *testing.T) {
	e, rm, sv := retryCheckEnv(t)
	keyed := e.pushToRetrier(t, `{"user":"alice","payload":"score","qos":1,"collapse_key":"score"}`)
	plain := e.pushToRetrier(t, `{"user":"alice","payload":"plain","qos":1}`)
	sv.Stop()
	rm.setOff(false)
	held := e.srv.m.retryHeld
	waitLong(t, "a round without saver to hold the keyed message and push the plain one", 10*time.Second,
		func() bool { return counterValue(held) >= 1 && rm.got(plain) > 0 })
	if n := rm.got(keyed); n != 0 {
		t.Fatalf("message with a collapse key pushed %d times unchecked while saver was down", n)
	}
	if !e.inRetrier(keyed) {
		t.Fatal("the keyed message left the retrier while saver was down")
	}
	sv.Restart()
	waitLong(t, "the keyed message delivered once saver is back", 15*time.Second, func() bool { return rm.got(keyed) > 0 })
}

// A message past its expiry is dropped without asking saver; a saver that
// does not know States (an older version) gets the round pushed
// unchecked, as before the check existed.
func TestRetrierCheckLocalExpiryAndOldSaver(t *testing.T) {
	f := &flaky{fails: map[uint64]int{}, calls: map[uint64][]time.Time{}, doneCh: make(chan uint64, 10)}
	m := newMetrics(prometheus.NewRegistry())
	var mu sync.Mutex
	asked := map[uint64]bool{}
	states := func(_ context.Context, msgs []*internalpb.Message) ([]internalpb.MessageState, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, msg := range msgs {
			asked[msg.GetId()] = true
		}
		return nil, errors.Join(errors.New("saver: states"), status.Error(codes.Unimplemented, "unknown method States"))
	}
	r := newRetrier(f.deliver, states, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.stop()
	past := time.Now().Add(-time.Second).UnixMilli()
	r.add([]*internalpb.Message{{Id: 1, Qos: 1, ExpiresMs: past}, {Id: 2, Qos: 1}}, 0)
	select {
	case id := <-f.doneCh:
		if id != 2 {
			t.Fatalf("delivered %d, want 2", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("message 2 not pushed unchecked by a retrier whose saver lacks States")
	}
	mu.Lock()
	defer mu.Unlock()
	if asked[1] || !asked[2] {
		t.Fatalf("asked saver about %v: the expired message must be dropped without asking", asked)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls[1]) != 0 {
		t.Fatal("expired message pushed")
	}
	if got := counterValue(m.retrySkipped.WithLabelValues(skipExpired)); got != 1 {
		t.Fatalf("skipped{expired} = %v", got)
	}
	if got := counterValue(m.retryCheckFailed.WithLabelValues("unimplemented")); got != 1 {
		t.Fatalf("checks_failed{unimplemented} = %v", got)
	}
}

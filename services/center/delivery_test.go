package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// peers are in-process gRPC servers speaking the real Register, Saver and
// Room protocols, registered in the test's etcd cluster like the real
// services, so center's discovery, batching and fan-out are exercised end
// to end over gRPC.
type peers struct {
	internalpb.UnimplementedRegisterServer
	internalpb.UnimplementedSaverServer

	mu       sync.Mutex
	sessions []*internalpb.Session
	stored   []*internalpb.Message
	stores   int
	lookups  int
	// gate, when set, holds lookups until it is closed (each at most
	// gateHold): a slow register.
	gate chan struct{}
	// settling marks every lookup answer settling: register's store lost
	// its data moments ago.
	settling bool
	// unclaimed is what ClaimUndelivered hands out, each message once.
	unclaimed []*internalpb.Message
	claims    []*internalpb.ClaimUndeliveredRequest
}

const gateHold = time.Second

func (p *peers) Lookup(_ context.Context, req *internalpb.LookupSessionsRequest) (*internalpb.LookupSessionsReply, error) {
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	if gate != nil {
		// Each lookup is held until the gate opens, at most gateHold: well
		// inside center's lookup deadline however long the test runs.
		select {
		case <-gate:
		case <-time.After(gateHold):
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lookups++
	var out []*internalpb.Session
	for _, k := range req.GetUsers() {
		for _, s := range p.sessions {
			if s.GetApp() == k.GetApp() && s.GetUser() == k.GetUser() {
				out = append(out, s)
			}
		}
	}
	return &internalpb.LookupSessionsReply{Sessions: out, Settling: p.settling}, nil
}

func (p *peers) Store(_ context.Context, req *internalpb.StoreRequest) (*internalpb.StoreReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stores++
	p.stored = append(p.stored, req.GetMessages()...)
	return &internalpb.StoreReply{}, nil
}

func (p *peers) StoreMulti(_ context.Context, req *internalpb.StoreMultiRequest) (*internalpb.StoreMultiReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stores++
	t := req.GetMessage()
	for i, u := range req.GetUsers() {
		m := proto.Clone(t).(*internalpb.Message)
		m.Id, m.User, m.MulticastId, m.IdempotencyKey = req.GetIds()[i], u, req.GetIds()[0], ""
		p.stored = append(p.stored, m)
	}
	return &internalpb.StoreMultiReply{MulticastId: req.GetIds()[0], Users: req.GetUsers(), Ids: req.GetIds()}, nil
}

func (p *peers) Status(_ context.Context, req *internalpb.StatusRequest) (*internalpb.StatusReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.stored {
		if m.GetId() == req.GetId() && m.GetApp() == req.GetApp() {
			c := proto.Clone(m).(*internalpb.Message)
			c.State = internalpb.MessageState_MESSAGE_STATE_DELIVERED
			c.DeliveryCount = 1
			return &internalpb.StatusReply{Found: true, Message: c}, nil
		}
	}
	return &internalpb.StatusReply{}, nil
}

type room struct {
	internalpb.UnimplementedRoomServer
	mu      sync.Mutex
	pushed  []*internalpb.RoomPushRequest
	kicked  []*internalpb.Target
	calls   int // Push and PushBatch calls
	legacy  bool
	offline map[uint64]bool // connections that answer NOT_FOUND
}

func (r *room) Push(_ context.Context, req *internalpb.RoomPushRequest) (*internalpb.RoomPushReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	return r.push(req), nil
}

func (r *room) push(req *internalpb.RoomPushRequest) *internalpb.RoomPushReply {
	r.pushed = append(r.pushed, req)
	out := &internalpb.RoomPushReply{}
	for _, t := range req.GetTargets() {
		code := internalpb.ResultCode_RESULT_CODE_OK
		if r.offline[t.GetConnId()] {
			code = internalpb.ResultCode_RESULT_CODE_NOT_FOUND
		}
		out.Results = append(out.Results, &internalpb.TargetResult{ConnId: t.GetConnId(), Code: code})
	}
	return out
}

// PushBatch enforces the real room's bounds, so center's chunking is
// checked too. A legacy room answers Unimplemented, as one built before
// PushBatch existed would.
func (r *room) PushBatch(_ context.Context, req *internalpb.RoomPushBatchRequest) (*internalpb.RoomPushBatchReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.legacy {
		return nil, status.Error(codes.Unimplemented, "unknown method PushBatch")
	}
	targets := 0
	for _, p := range req.GetPushes() {
		targets += len(p.GetTargets())
	}
	if len(req.GetPushes()) > roomBatchPushes || targets > roomBatchTargets {
		return nil, status.Errorf(codes.InvalidArgument, "%d pushes, %d targets", len(req.GetPushes()), targets)
	}
	r.calls++
	out := &internalpb.RoomPushBatchReply{}
	for _, p := range req.GetPushes() {
		out.Replies = append(out.Replies, r.push(p))
	}
	return out, nil
}

func (r *room) Kick(_ context.Context, req *internalpb.RoomKickRequest) (*internalpb.RoomKickReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kicked = append(r.kicked, req.GetTargets()...)
	out := &internalpb.RoomKickReply{}
	for _, t := range req.GetTargets() {
		out.Results = append(out.Results, &internalpb.TargetResult{ConnId: t.GetConnId()})
	}
	return out, nil
}

func (r *room) pushes() []*internalpb.RoomPushRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*internalpb.RoomPushRequest(nil), r.pushed...)
}

func (e *testEnv) serveGRPC(svc, id string, register func(*grpc.Server)) string {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	gs := grpc.NewServer()
	register(gs)
	go func() { _ = gs.Serve(ln) }()
	e.t.Cleanup(gs.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	reg, err := discovery.Register(ctx, e.cli, e.cluster, discovery.Instance{Service: svc, ID: id, Addr: ln.Addr().String()},
		0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = reg.Close(c)
	})
	return ln.Addr().String()
}

// waitPeersDiscovered waits until center has found register and saver in
// etcd: a QoS 0 push needs register only, so saver is asked too, for the
// status of a message it does not hold (404 once it answers, 503 before).
func waitPeersDiscovered(t testing.TB, e *testEnv) {
	t.Helper()
	waitFor(t, "register and saver to be discovered", func() bool {
		return e.postJSON("/v1/push", `{"user":"nobody","payload":"x","qos":0}`).status == 200 &&
			e.do(http.MethodGet, "/v1/messages/1", testKey, "", nil).status == http.StatusNotFound
	})
}

// waitFor polls cond until it holds, failing t after 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitLong(t, what, 5*time.Second, cond)
}

// waitLong is waitFor with a deadline of its own (retry rounds come
// seconds apart).
func waitLong(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDelivery(t *testing.T) {
	e := newTestEnv(t)
	p := &peers{}
	roomA, roomB := &room{}, &room{}
	e.serveGRPC(discovery.ServiceRegister, "register-1", func(s *grpc.Server) { internalpb.RegisterRegisterServer(s, p) })
	e.serveGRPC(discovery.ServiceSaver, "saver-1", func(s *grpc.Server) { internalpb.RegisterSaverServer(s, p) })
	addrA := e.serveGRPC(discovery.ServiceRoom, "room-a", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, roomA) })
	addrB := e.serveGRPC(discovery.ServiceRoom, "room-b", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, roomB) })
	p.sessions = []*internalpb.Session{
		{App: "app1", User: "alice", Device: "phone", RoomId: "room-a", RoomAddr: addrA, ConnId: 1, Platform: "ios"},
		{App: "app1", User: "alice", Device: "pc", RoomId: "room-b", RoomAddr: addrB, ConnId: 2},
		{App: "app1", User: "bob", Device: "phone", RoomId: "room-a", RoomAddr: addrA, ConnId: 3},
		// A stale record naming a room that is gone: skipped, never dialed.
		{App: "app1", User: "bob", Device: "old", RoomId: "room-x", RoomAddr: "127.0.0.1:1", ConnId: 4},
		{App: "app2", User: "alice", Device: "phone", RoomId: "room-a", RoomAddr: addrA, ConnId: 5},
	}
	waitFor(t, "rooms to be discovered", func() bool {
		e.srv.rooms.mu.RLock()
		defer e.srv.rooms.mu.RUnlock()
		return e.srv.rooms.known[addrA] && e.srv.rooms.known[addrB]
	})
	waitPeersDiscovered(t, e)

	t.Run("qos0 all devices", func(t *testing.T) {
		r := e.postJSON("/v1/push", `{"app":"app1","user":"alice","payload":"hi","qos":0}`)
		if r.status != 200 || r.body["delivered"] != float64(2) || r.body["qos"] != float64(0) {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		if _, err := strconv.ParseUint(r.body["id"].(string), 10, 64); err != nil {
			t.Fatalf("id %v: %v", r.body["id"], err)
		}
	})
	t.Run("qos0 one device", func(t *testing.T) {
		before := len(roomB.pushes())
		r := e.postJSON("/v1/push", `{"user":"alice","device":"pc","payload_base64":"aGk=","qos":0}`)
		if r.status != 200 || r.body["delivered"] != float64(1) {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		got := roomB.pushes()
		if len(got) != before+1 || string(got[before].GetMessage().GetPayload()) != "hi" || got[before].GetTargets()[0].GetConnId() != 2 {
			t.Fatalf("room b pushes %v", got)
		}
	})
	t.Run("qos1 stored before answer", func(t *testing.T) {
		r := e.postJSON("/v1/push", `{"user":"bob","payload":"m1","qos":1}`)
		if r.status != 200 || r.body["qos"] != float64(1) {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		id, _ := strconv.ParseUint(r.body["id"].(string), 10, 64)
		p.mu.Lock()
		m := p.stored[len(p.stored)-1]
		p.mu.Unlock()
		if m.GetId() != id || m.GetUser() != "bob" || m.GetQos() != 1 || m.GetExpiresMs()-m.GetCreatedMs() != defaultTTL.Milliseconds() {
			t.Fatalf("stored %v", m)
		}
		waitFor(t, "async delivery to room a", func() bool {
			for _, pr := range roomA.pushes() {
				if pr.GetMessage().GetId() == id {
					return true
				}
			}
			return false
		})
		st := e.do(http.MethodGet, "/v1/messages/"+r.body["id"].(string), testKey, "", nil)
		if st.status != 200 || st.body["state"] != "delivered" || st.body["delivery_count"] != float64(1) {
			t.Fatalf("status %d %v", st.status, st.body)
		}
		// Another app's key cannot see it.
		expectError(t, e.do(http.MethodGet, "/v1/messages/"+r.body["id"].(string), otherTestKey, "", nil), 404, CodeNotFound)
	})
	t.Run("multi", func(t *testing.T) {
		p.mu.Lock()
		storesBefore := p.stores
		p.mu.Unlock()
		r := e.postJSON("/v1/push/multi", `{"users":["alice","bob","carol"],"payload":"all","qos":1,"ttl":60}`)
		if r.status != 200 {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		got := r.body["ids"].(map[string]any)
		if len(got) != 3 || got["alice"] == got["bob"] {
			t.Fatalf("ids %v", got)
		}
		p.mu.Lock()
		stores := p.stores - storesBefore
		p.mu.Unlock()
		if stores != 1 {
			t.Fatalf("%d Store calls for 3 messages, want 1 batch", stores)
		}
	})
	t.Run("sessions", func(t *testing.T) {
		r := e.do(http.MethodGet, "/v1/apps/app1/users/alice/sessions", testKey, "", nil)
		ss := r.body["sessions"].([]any)
		if r.status != 200 || len(ss) != 2 {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		first := ss[0].(map[string]any)
		if first["device"] != "phone" || first["room_id"] != "room-a" || first["platform"] != "ios" {
			t.Fatalf("session %v", first)
		}
	})
	t.Run("kick", func(t *testing.T) {
		r := e.postJSON("/v1/kick", `{"user":"alice","device":"phone","reason":"test"}`)
		if r.status != 200 || r.body["kicked"] != float64(1) {
			t.Fatalf("got %d %v", r.status, r.body)
		}
		roomA.mu.Lock()
		defer roomA.mu.Unlock()
		if len(roomA.kicked) != 1 || roomA.kicked[0].GetConnId() != 1 {
			t.Fatalf("kicked %v", roomA.kicked)
		}
	})
}

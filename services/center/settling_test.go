package main

import (
	"strconv"
	"testing"

	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Register answers "settling" just after its store lost its data, while
// rooms are still putting their sessions back: a user it does not find is
// delivered to where center last saw it, and one center never saw is
// retried until register knows it again, not left to the sweep.
func TestDeliveryWhileRegisterSettles(t *testing.T) {
	e := newTestEnv(t)
	e.srv.routes = newRouteCache(defaultRouteCacheSize, defaultRouteCacheTTL)
	p := &peers{}
	rm := &room{}
	e.serveGRPC(discovery.ServiceRegister, "register-1", func(s *grpc.Server) { internalpb.RegisterRegisterServer(s, p) })
	e.serveGRPC(discovery.ServiceSaver, "saver-1", func(s *grpc.Server) { internalpb.RegisterSaverServer(s, p) })
	addr := e.serveGRPC(discovery.ServiceRoom, "room-a", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, rm) })
	alice := &internalpb.Session{App: "app1", User: "alice", Device: "phone", RoomId: "room-a", RoomAddr: addr, ConnId: 1}
	carol := &internalpb.Session{App: "app1", User: "carol", Device: "phone", RoomId: "room-a", RoomAddr: addr, ConnId: 2}
	p.mu.Lock()
	p.sessions = []*internalpb.Session{alice}
	p.mu.Unlock()
	waitFor(t, "room to be discovered", func() bool {
		e.srv.rooms.mu.RLock()
		defer e.srv.rooms.mu.RUnlock()
		return e.srv.rooms.known[addr]
	})
	waitPeersDiscovered(t, e)
	pushedID := func(id string) bool {
		for _, pr := range rm.pushes() {
			if pr.GetMessage().GetId() == parseID(t, id) {
				return true
			}
		}
		return false
	}
	// A delivery through a lookup: center learns where alice is.
	first := e.postJSON("/v1/push", `{"user":"alice","payload":"m1","qos":1}`)
	waitFor(t, "first delivery", func() bool { return pushedID(first.body["id"].(string)) })

	// Redis lost everything; rooms have not put their sessions back yet.
	p.mu.Lock()
	p.sessions, p.settling = nil, true
	p.mu.Unlock()
	hitsBefore := counterValue(e.srv.m.routeFallback.WithLabelValues("hit"))
	during := e.postJSON("/v1/push", `{"user":"alice","payload":"m2","qos":1}`)
	waitFor(t, "delivery by the last answer while register settles", func() bool { return pushedID(during.body["id"].(string)) })
	if hits := counterValue(e.srv.m.routeFallback.WithLabelValues("hit")); hits <= hitsBefore {
		t.Fatalf("route cache hits %v (before %v): the delivery did not come from the cache", hits, hitsBefore)
	}
	// carol was never looked up: her message is retried, and delivered
	// once her room put her session back.
	waiting := e.postJSON("/v1/push", `{"user":"carol","payload":"m3","qos":1}`)
	waitFor(t, "carol's message queued for a retry", func() bool {
		e.srv.retry.mu.Lock()
		defer e.srv.retry.mu.Unlock()
		for _, it := range e.srv.retry.items {
			if it.m.GetId() == parseID(t, waiting.body["id"].(string)) {
				return true
			}
		}
		return false
	})
	if pushedID(waiting.body["id"].(string)) {
		t.Fatal("carol's message was pushed before any room held her session")
	}
	p.mu.Lock()
	p.sessions = []*internalpb.Session{alice, carol}
	p.mu.Unlock()
	waitFor(t, "carol's message delivered by the retrier", func() bool { return pushedID(waiting.body["id"].(string)) })
}

func parseID(t *testing.T, id string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return n
}

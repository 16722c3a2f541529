package main

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

func (p *peers) ClaimUndelivered(_ context.Context, req *internalpb.ClaimUndeliveredRequest) (*internalpb.ClaimUndeliveredReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claims = append(p.claims, req)
	n := min(int(req.GetLimit()), len(p.unclaimed))
	out := p.unclaimed[:n]
	p.unclaimed = p.unclaimed[n:]
	return &internalpb.ClaimUndeliveredReply{Messages: out}, nil
}

func (p *peers) claimCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.claims)
}

func TestRedeliverySweep(t *testing.T) {
	e := newTestEnv(t)
	p := &peers{}
	ra := &room{}
	e.serveGRPC(discovery.ServiceRegister, "register-1", func(s *grpc.Server) { internalpb.RegisterRegisterServer(s, p) })
	e.serveGRPC(discovery.ServiceSaver, "saver-1", func(s *grpc.Server) { internalpb.RegisterSaverServer(s, p) })
	addr := e.serveGRPC(discovery.ServiceRoom, "room-a", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, ra) })
	p.sessions = []*internalpb.Session{{App: "app1", User: "alice", Device: "phone", RoomId: "room-a", RoomAddr: addr, ConnId: 7}}
	missed := &internalpb.Message{Id: 4242, App: "app1", User: "alice", Qos: 1, Payload: []byte("missed")}
	offline := &internalpb.Message{Id: 4243, App: "app1", User: "nobody", Qos: 1, Payload: []byte("later")}
	p.unclaimed = []*internalpb.Message{missed, offline}
	waitFor(t, "room to be discovered", func() bool {
		e.srv.rooms.mu.RLock()
		defer e.srv.rooms.mu.RUnlock()
		return e.srv.rooms.known[addr]
	})

	r := startRedeliverer(e.srv, 20*time.Millisecond)
	waitFor(t, "redelivered message at the room", func() bool {
		for _, pr := range ra.pushes() {
			if pr.GetMessage().GetId() == missed.GetId() && pr.GetTargets()[0].GetConnId() == 7 {
				return true
			}
		}
		return false
	})
	waitFor(t, "further sweep rounds", func() bool { return p.claimCount() >= 3 })
	r.stop()
	// A claim sent just before stop may still reach the stand-in saver
	// after stop returned (stop cancels it client-side); let it land.
	time.Sleep(50 * time.Millisecond)
	rounds := p.claimCount()
	time.Sleep(100 * time.Millisecond)
	if p.claimCount() != rounds {
		t.Fatalf("sweep still claiming after stop")
	}
	r.stop() // a second stop is harmless

	p.mu.Lock()
	first := p.claims[0]
	p.mu.Unlock()
	if first.GetLimit() != redeliverLimit || first.GetMinAgeMs() != redeliverMinAge.Milliseconds() {
		t.Fatalf("claim request %v", first)
	}
	if n := value(t, e.srv.m.redelivered); n != 2 {
		t.Fatalf("redelivered metric %v, want 2 (both claimed messages queued)", n)
	}
	if got := len(ra.pushes()); got != 1 {
		t.Fatalf("room got %d pushes, want 1 (each message claimed once)", got)
	}
}

// With the delivery queue unable to take them, claimed messages are left
// for saver to hand out again after the backoff, not counted.
func TestRedeliverySkipsWhenQueueFull(t *testing.T) {
	e := newTestEnv(t)
	p := &peers{unclaimed: []*internalpb.Message{{Id: 1, App: "app1", User: "alice", Qos: 1}}}
	e.serveGRPC(discovery.ServiceSaver, "saver-1", func(s *grpc.Server) { internalpb.RegisterSaverServer(s, p) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.batch.close(ctx); err != nil {
		t.Fatal(err)
	}
	r := startRedeliverer(e.srv, 20*time.Millisecond)
	defer r.stop()
	waitFor(t, "a claim round", func() bool { return p.claimCount() >= 2 })
	if n := value(t, e.srv.m.redelivered); n != 0 {
		t.Fatalf("redelivered metric %v with no queue room, want 0", n)
	}
}

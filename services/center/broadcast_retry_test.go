package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// bcastRoom is a room whose first Broadcast calls fail Unavailable, as
// calls to a room whose connection center still backs off from do.
type bcastRoom struct {
	internalpb.UnimplementedRoomServer
	mu    sync.Mutex
	fail  int // calls left to fail
	calls int
	got   int // broadcasts taken
}

func (r *bcastRoom) Broadcast(context.Context, *internalpb.RoomBroadcastRequest) (*internalpb.RoomBroadcastReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail > 0 {
		r.fail--
		return nil, status.Error(codes.Unavailable, "connection refused")
	}
	r.got++
	return &internalpb.RoomBroadcastReply{Reached: 3}, nil
}

func (r *bcastRoom) counts() (calls, got int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.got
}

// progressSaver records BroadcastProgress.
type progressSaver struct {
	internalpb.UnimplementedSaverServer
	mu    sync.Mutex
	items []*internalpb.BroadcastRoomProgress
}

func (s *progressSaver) BroadcastProgress(_ context.Context, req *internalpb.BroadcastProgressRequest) (*internalpb.BroadcastProgressReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items = append(s.items, req.GetItems()...)
	return &internalpb.BroadcastProgressReply{}, nil
}

func (s *progressSaver) done() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// A room that could not be reached is sent the broadcast again within
// about a second, not left to the sweep's resend after broadcastMinAge.
func TestBroadcastRetriedOnUnreachableRoom(t *testing.T) {
	e := newTestEnv(t)
	ps := &progressSaver{}
	rm := &bcastRoom{fail: 2}
	e.serveGRPC(discovery.ServiceSaver, "saver-1", func(s *grpc.Server) { internalpb.RegisterSaverServer(s, ps) })
	addr := e.serveGRPC(discovery.ServiceRoom, "room-a", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, rm) })
	w := discovery.Watch(e.cli, e.cluster, discovery.ServiceRoom, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(w.Close)
	e.srv.bcast.rooms = w
	waitFor(t, "room and saver discovered", func() bool {
		e.srv.rooms.mu.RLock()
		known := e.srv.rooms.known[addr]
		e.srv.rooms.mu.RUnlock()
		return known && len(e.srv.bcast.liveRooms()) == 1
	})
	b := &internalpb.Broadcast{Id: 7, App: "app1", Seq: 1, Payload: []byte("hi"), Qos: 1}
	e.srv.bcast.sendAll(b, e.srv.bcast.liveRooms())
	waitFor(t, "the broadcast taken after two refused calls", func() bool {
		calls, got := rm.counts()
		return calls == 3 && got == 1 && ps.done() == 1
	})
}

package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// lostRegister has lost every session (Redis data loss): Refresh reports
// each missing; Put records what comes back.
type lostRegister struct {
	internalpb.RegisterClient
	mu   sync.Mutex
	puts []*internalpb.Session
}

func (l *lostRegister) Refresh(_ context.Context, req *internalpb.RefreshSessionsRequest, _ ...grpc.CallOption) (*internalpb.RefreshSessionsReply, error) {
	return &internalpb.RefreshSessionsReply{Missing: req.GetSessions()}, nil
}

func (l *lostRegister) Put(_ context.Context, req *internalpb.PutSessionsRequest, _ ...grpc.CallOption) (*internalpb.PutSessionsReply, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.puts = append(l.puts, req.GetSessions()...)
	return &internalpb.PutSessionsReply{}, nil
}

func (l *lostRegister) Delete(context.Context, *internalpb.DeleteSessionsRequest, ...grpc.CallOption) (*internalpb.DeleteSessionsReply, error) {
	return &internalpb.DeleteSessionsReply{}, nil
}

func (l *lostRegister) Epoch(context.Context, *internalpb.EpochRequest, ...grpc.CallOption) (*internalpb.EpochReply, error) {
	return &internalpb.EpochReply{Epoch: "e"}, nil
}

func (l *lostRegister) putConns() map[uint64]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[uint64]bool{}
	for _, s := range l.puts {
		out[s.GetConnId()] = true
	}
	return out
}

// pullSaver answers every pull with nothing and records whose it was.
type pullSaver struct {
	internalpb.SaverClient
	mu    sync.Mutex
	users map[string]int
}

func (p *pullSaver) PendingBatch(_ context.Context, req *internalpb.PendingBatchRequest, _ ...grpc.CallOption) (*internalpb.PendingBatchReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rep := &internalpb.PendingBatchReply{}
	for _, r := range req.GetRequests() {
		p.users[r.GetUser()]++
		rep.Replies = append(rep.Replies, &internalpb.PendingBatchEntry{})
	}
	return rep, nil
}

func (p *pullSaver) pulls(user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.users[user]
}

// After register lost its data, a refresh puts back the open sessions but
// not a parked one: its client may have logged in elsewhere meanwhile, and
// putting it back would hide that login. The parked session ends instead.
func TestRefreshEndsParkedMissingSession(t *testing.T) {
	var cfg config
	fs := flag.NewFlagSet("room", flag.ContinueOnError)
	cfg.bind(fs)
	if err := fs.Parse([]string{"-instance", "room-lost-1", "-tcp", "127.0.0.1:0", "-grpc", "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	reg := &lostRegister{}
	sv := &pullSaver{users: map[string]int{}}
	r, err := newRoom(cfg, roomDeps{
		log: slog.New(slog.NewJSONHandler(io.Discard, nil)), metrics: newMetrics(prometheus.NewRegistry()),
		secretOf: func(string) ([]byte, bool) { return nil, false }, register: reg, saver: sv,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.sessions.Close(ctx)
		_ = r.reports.Close(ctx)
		r.close()
	})
	live := &session{r: r, c: &benchConn{}, id: 1, key: sessionKey{app: "a", user: "live", device: "d"}}
	live.set(flagAuthed)
	pc := &parkConn{limit: 4, addr: netip.MustParseAddrPort("127.0.0.1:2")}
	parked := &session{r: r, c: pc, id: 2, key: sessionKey{app: "a", user: "away", device: "d"}}
	parked.set(flagAuthed)
	ended := make(chan struct{})
	pc.onClose = func() { close(ended) }
	for _, s := range []*session{live, parked} {
		r.hub.AddConn(s)
		r.hub.Bind(s)
	}
	if err := r.sessions.refresh([]*internalpb.Session{live.regSession(), parked.regSession()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the parked session did not end")
	}
	waitFor(t, "the open session put back", func() bool { return reg.putConns()[1] })
	if reg.putConns()[2] {
		t.Fatal("the parked session was put back")
	}
	// What center stored while register did not know the session is pulled.
	waitFor(t, "the session put back to pull", func() bool { return sv.pulls("live") > 0 })
	if n := sv.pulls("away"); n != 0 {
		t.Fatalf("the parked session pulled %d times", n)
	}
}

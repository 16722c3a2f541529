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

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// recSaver is a saver gRPC server that records PendingBatch calls and
// hands each user's backlog out once; the rest of Saver is Unimplemented
// (the room copes, as with a saver that is down).
type recSaver struct {
	internalpb.UnimplementedSaverServer
	mu      sync.Mutex
	batches []int // users per call, empty calls (the readiness probe) left out
	users   map[string]int
	backlog map[string][]*internalpb.Message
}

func (s *recSaver) PendingBatch(_ context.Context, req *internalpb.PendingBatchRequest) (*internalpb.PendingBatchReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := &internalpb.PendingBatchReply{}
	if len(req.GetRequests()) > 0 {
		s.batches = append(s.batches, len(req.GetRequests()))
	}
	for _, r := range req.GetRequests() {
		s.users[r.GetUser()]++
		rep.Replies = append(rep.Replies, &internalpb.PendingBatchEntry{Messages: s.backlog[r.GetUser()]})
		delete(s.backlog, r.GetUser())
	}
	return rep, nil
}

func (s *recSaver) seen() (batches []int, users int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.batches...), len(s.users)
}

// startRecSaver serves a recSaver and announces it in the env's cluster,
// returning once the room's saver client reaches it.
func startRecSaver(t *testing.T, e *testEnv) *recSaver {
	t.Helper()
	rs := &recSaver{users: map[string]int{}, backlog: map[string][]*internalpb.Message{}}
	serveSaver(t, e, rs)
	return rs
}

// serveSaver serves srv as the env's saver, returning once the room's
// saver client reaches it.
func serveSaver(t *testing.T, e *testEnv, srv internalpb.SaverServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpcconn.ServerOptions()...)
	internalpb.RegisterSaverServer(gs, srv)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := discovery.Register(ctx, e.cli, e.cluster, discovery.Instance{Service: discovery.ServiceSaver, ID: "rec-saver", Addr: ln.Addr().String()},
		0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		_, err := e.srv.r.saver.PendingBatch(cctx, &internalpb.PendingBatchRequest{})
		ccancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the room never reached the recording saver: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pulls queued within one window leave in one PendingBatch call.
func TestPullsOfOneWindowMakeOneBatch(t *testing.T) {
	e := startEnv(t, engineStd, nil)
	rs := startRecSaver(t, e)
	r := e.srv.r
	const n = 64
	// A window that only the size ends makes the count exact.
	p := newPuller(r, n, time.Hour)
	t.Cleanup(p.close)
	sessions := make([]*session, n)
	for i := range sessions {
		s := &session{r: r, key: sessionKey{app: "appA", user: fmt.Sprintf("w-%d", i), device: "d"}}
		s.pending.start()
		if !p.add(s, 0) {
			t.Fatalf("pull %d shed", i)
		}
		sessions[i] = s
	}
	waitFor(t, "every pull answered", func() bool {
		for _, s := range sessions {
			s.pending.mu.Lock()
			busy := s.pending.pulling
			s.pending.mu.Unlock()
			if busy {
				return false
			}
		}
		return true
	})
	if batches, users := rs.seen(); len(batches) != 1 || batches[0] != n || users != n {
		t.Fatalf("saver saw calls of %v users (%d users in all), want one call of %d", batches, users, n)
	}
}

// Real logins: their pulls share calls, and a backlog still arrives.
func TestLoginsPullInBatches(t *testing.T) { forEachEngine(t, testLoginsPullInBatches) }

func testLoginsPullInBatches(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	rs := startRecSaver(t, e)
	rs.mu.Lock()
	rs.backlog["login-0"] = []*internalpb.Message{{Id: 42, App: "appA", User: "login-0", Qos: 1, Payload: []byte("while away"), CreatedMs: time.Now().UnixMilli()}}
	rs.mu.Unlock()
	const n = 40
	clients := make([]*tclient, n)
	for i := range clients {
		clients[i] = e.dial()
	}
	for i, c := range clients {
		c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: e.token("appA", testSecretA, fmt.Sprintf("login-%d", i), "d", time.Hour)})
	}
	for i, c := range clients {
		if f, m := c.read(); f.Op != protocol.OpAuthReply {
			t.Fatalf("client %d: got %s %v, want AUTH_REPLY", i, f.Op, m)
		}
	}
	f, m := clients[0].read()
	if f.Op != protocol.OpPush || m.(*clientpb.Push).GetId() != 42 {
		t.Fatalf("backlog: got %s %v, want PUSH 42", f.Op, m)
	}
	waitFor(t, "every login pulled", func() bool { _, users := rs.seen(); return users == n })
	batches, _ := rs.seen()
	// The logins of one register flush pull together; a loaded box may
	// split them over a few windows, never one call each.
	if len(batches) > n/4 {
		t.Fatalf("%d logins made %d PendingBatch calls %v", n, len(batches), batches)
	}
	var d dto.Metric
	if err := e.srv.r.m.pullBatches.Write(&d); err != nil {
		t.Fatal(err)
	}
	if got := d.GetCounter().GetValue(); got != float64(len(batches)) {
		t.Fatalf("pending batches metric %v, calls seen %d", got, len(batches))
	}
}

// waitFor polls cond with a deadline generous enough for a loaded box.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

type fixture struct {
	rdb redis.UniversalClient
	cli internalpb.RegisterClient
}

// newFixture serves register on a real loopback socket over a private,
// empty Redis.
func newFixture(t *testing.T, ttl time.Duration) *fixture {
	t.Helper()
	// A private redis-server per test, so parallel runs never share keys.
	return newFixtureOn(t, ttl, redistest.Start(t).Addr())
}

// newFixtureOn is newFixture on the given -redis value (one server or a
// cluster's nodes).
func newFixtureOn(t *testing.T, ttl time.Duration, redisAddrs string) *fixture {
	t.Helper()
	rdb, err := newRedis(context.Background(), redisAddrs, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := &store{rdb: rdb, ttl: ttl}
	if err := st.loadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := newMetrics(prometheus.NewRegistry())
	srv := &server{store: st, epochs: newEpochs(st.rdb), metrics: m, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(grpcconn.ServerOptions(), grpc.ChainUnaryInterceptor(m.interceptor))...)
	internalpb.RegisterRegisterServer(gs, srv)
	go gs.Serve(ln)
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		gs.Stop()
		rdb.Close()
	})
	return &fixture{rdb: rdb, cli: internalpb.NewRegisterClient(cc)}
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), grpcconn.DefaultCallTimeout)
	t.Cleanup(cancel)
	return ctx
}

func sess(app, user, dev, room string, conn uint64) *internalpb.Session {
	return &internalpb.Session{App: app, User: user, Device: dev, RoomId: room, RoomAddr: room + ":7301",
		ConnId: conn, LoginMs: time.Now().UnixMilli(), ClientIp: "127.0.0.1", Platform: "android"}
}

func (f *fixture) lookup(t *testing.T, app, user string) []*internalpb.Session {
	t.Helper()
	r, err := f.cli.Lookup(callCtx(t), &internalpb.LookupSessionsRequest{Users: []*internalpb.UserKey{{App: app, User: user}}})
	if err != nil {
		t.Fatal(err)
	}
	out := r.GetSessions()
	sort.Slice(out, func(i, j int) bool { return out[i].GetDevice() < out[j].GetDevice() })
	return out
}

func TestPutLookupSeveralDevices(t *testing.T) {
	f := newFixture(t, time.Minute)
	_, err := f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: []*internalpb.Session{
		sess("app1", "alice", "phone", "room-a", 1),
		sess("app1", "alice", "pc", "room-b", 2),
		sess("app1", "bob", "phone", "room-a", 3),
		sess("app2", "alice", "phone", "room-c", 4), // same user name, other app
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := f.lookup(t, "app1", "alice")
	if len(got) != 2 || got[0].GetDevice() != "pc" || got[0].GetRoomId() != "room-b" || got[0].GetConnId() != 2 ||
		got[1].GetDevice() != "phone" || got[1].GetRoomAddr() != "room-a:7301" || got[1].GetPlatform() != "android" {
		t.Fatalf("alice@app1 sessions: %v", got)
	}
	r, err := f.cli.Lookup(callCtx(t), &internalpb.LookupSessionsRequest{Users: []*internalpb.UserKey{
		{App: "app1", User: "bob"}, {App: "app2", User: "alice"}, {App: "app1", User: "nobody"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetSessions()) != 2 {
		t.Fatalf("batch lookup: %v", r.GetSessions())
	}
	// A re-login of the same device replaces the session.
	if _, err := f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: []*internalpb.Session{sess("app1", "alice", "phone", "room-z", 9)}}); err != nil {
		t.Fatal(err)
	}
	got = f.lookup(t, "app1", "alice")
	if len(got) != 2 || got[1].GetRoomId() != "room-z" || got[1].GetConnId() != 9 {
		t.Fatalf("after re-login: %v", got)
	}
}

func TestRefreshReportsMissingAfterFlush(t *testing.T) {
	f := newFixture(t, time.Minute)
	a, b := sess("app1", "alice", "phone", "room-a", 1), sess("app1", "bob", "pc", "room-a", 2)
	if _, err := f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: []*internalpb.Session{a, b}}); err != nil {
		t.Fatal(err)
	}
	r, err := f.cli.Refresh(callCtx(t), &internalpb.RefreshSessionsRequest{Sessions: []*internalpb.Session{a, b}})
	if err != nil || len(r.GetMissing()) != 0 {
		t.Fatalf("refresh before flush: %v %v", r.GetMissing(), err)
	}
	// Redis loses its data, including the script cache.
	if err := f.rdb.FlushDB(callCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.ScriptFlush(callCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	r, err = f.cli.Refresh(callCtx(t), &internalpb.RefreshSessionsRequest{Sessions: []*internalpb.Session{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetMissing()) != 2 || r.GetMissing()[0].GetUser() != "alice" || r.GetMissing()[1].GetConnId() != 2 {
		t.Fatalf("missing after flush: %v", r.GetMissing())
	}
	// The room re-puts what was missing and the sessions are back.
	if _, err := f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: r.GetMissing()}); err != nil {
		t.Fatal(err)
	}
	if got := f.lookup(t, "app1", "alice"); len(got) != 1 || got[0].GetRoomId() != "room-a" {
		t.Fatalf("after re-put: %v", got)
	}
}

func TestDeleteKeepsNewerLogin(t *testing.T) {
	f := newFixture(t, time.Minute)
	old, newer := sess("app1", "alice", "phone", "room-a", 1), sess("app1", "alice", "phone", "room-b", 7)
	other := sess("app1", "alice", "pc", "room-a", 2)
	for _, s := range []*internalpb.Session{old, other, newer} {
		if _, err := f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: []*internalpb.Session{s}}); err != nil {
			t.Fatal(err)
		}
	}
	// The old connection's logout and refresh arrive after the newer login.
	if _, err := f.cli.Delete(callCtx(t), &internalpb.DeleteSessionsRequest{Sessions: []*internalpb.Session{old}}); err != nil {
		t.Fatal(err)
	}
	r, err := f.cli.Refresh(callCtx(t), &internalpb.RefreshSessionsRequest{Sessions: []*internalpb.Session{old}})
	if err != nil || len(r.GetMissing()) != 0 {
		t.Fatalf("superseded refresh must not ask for a re-put: %v %v", r.GetMissing(), err)
	}
	got := f.lookup(t, "app1", "alice")
	if len(got) != 2 || got[1].GetRoomId() != "room-b" || got[1].GetConnId() != 7 {
		t.Fatalf("newer login lost: %v", got)
	}
	// Same room, other connection id: still not the owner.
	sameRoom := sess("app1", "alice", "phone", "room-b", 6)
	if _, err := f.cli.Delete(callCtx(t), &internalpb.DeleteSessionsRequest{Sessions: []*internalpb.Session{sameRoom}}); err != nil {
		t.Fatal(err)
	}
	if got := f.lookup(t, "app1", "alice"); len(got) != 2 {
		t.Fatalf("delete by another conn id removed the session: %v", got)
	}
	if _, err := f.cli.Delete(callCtx(t), &internalpb.DeleteSessionsRequest{Sessions: []*internalpb.Session{newer, other}}); err != nil {
		t.Fatal(err)
	}
	if got := f.lookup(t, "app1", "alice"); len(got) != 0 {
		t.Fatalf("owner's delete left: %v", got)
	}
	if n := f.rdb.Exists(callCtx(t), userKey("app1", "alice")).Val(); n != 0 {
		t.Fatalf("empty user hash still exists")
	}
}

func TestPerDeviceTTL(t *testing.T) {
	const ttl = time.Second
	f := newFixture(t, ttl)
	phone, pc := sess("app1", "alice", "phone", "room-a", 1), sess("app1", "alice", "pc", "room-a", 2)
	if _, err := f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: []*internalpb.Session{phone, pc}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	// Only the pc keeps refreshing.
	if r, err := f.cli.Refresh(callCtx(t), &internalpb.RefreshSessionsRequest{Sessions: []*internalpb.Session{pc}}); err != nil || len(r.GetMissing()) != 0 {
		t.Fatalf("refresh: %v %v", r.GetMissing(), err)
	}
	time.Sleep(600 * time.Millisecond)
	got := f.lookup(t, "app1", "alice")
	if len(got) != 1 || got[0].GetDevice() != "pc" {
		t.Fatalf("after the phone's TTL: %v", got)
	}
	r, err := f.cli.Refresh(callCtx(t), &internalpb.RefreshSessionsRequest{Sessions: []*internalpb.Session{phone, pc}})
	if err != nil || len(r.GetMissing()) != 1 || r.GetMissing()[0].GetDevice() != "phone" {
		t.Fatalf("refresh of expired phone: %v %v", r.GetMissing(), err)
	}
	// Nothing refreshes any more: the whole key goes away in Redis too.
	time.Sleep(ttl + 200*time.Millisecond)
	if got := f.lookup(t, "app1", "alice"); len(got) != 0 {
		t.Fatalf("after full TTL: %v", got)
	}
	if n := f.rdb.Exists(callCtx(t), userKey("app1", "alice")).Val(); n != 0 {
		t.Fatalf("user key outlived its sessions")
	}
}

func TestValidation(t *testing.T) {
	f := newFixture(t, time.Minute)
	big := make([]*internalpb.Session, maxBatch+1)
	for i := range big {
		big[i] = sess("app1", "u"+strconv.Itoa(i), "d", "room-a", uint64(i))
	}
	cases := map[string]error{}
	_, cases["empty app"] = f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: []*internalpb.Session{sess("", "u", "d", "r", 1)}})
	_, cases["empty user"] = f.cli.Refresh(callCtx(t), &internalpb.RefreshSessionsRequest{Sessions: []*internalpb.Session{sess("a", "", "d", "r", 1)}})
	_, cases["empty room"] = f.cli.Delete(callCtx(t), &internalpb.DeleteSessionsRequest{Sessions: []*internalpb.Session{sess("a", "u", "d", "", 1)}})
	_, cases["lookup empty user"] = f.cli.Lookup(callCtx(t), &internalpb.LookupSessionsRequest{Users: []*internalpb.UserKey{{App: "a"}}})
	_, cases["batch too big"] = f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: big})
	for name, err := range cases {
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", name, err)
		}
	}
	// A full batch of the maximum size is accepted and pipelined.
	if _, err := f.cli.Put(callCtx(t), &internalpb.PutSessionsRequest{Sessions: big[:maxBatch]}); err != nil {
		t.Fatal(err)
	}
	users := make([]*internalpb.UserKey, maxBatch)
	for i := range users {
		users[i] = &internalpb.UserKey{App: "app1", User: "u" + strconv.Itoa(i)}
	}
	r, err := f.cli.Lookup(callCtx(t), &internalpb.LookupSessionsRequest{Users: users})
	if err != nil || len(r.GetSessions()) != maxBatch {
		t.Fatalf("lookup of %d users: %d sessions, %v", maxBatch, len(r.GetSessions()), err)
	}
}

func TestKeyAmbiguity(t *testing.T) {
	if userKey("a:b", "c") == userKey("a", "b:c") {
		t.Fatal("keys of different (app, user) pairs collide")
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/service"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// These tests run the room's TCP engine, auth path and Room service against
// the real etcd (PUSHGW_ETCD, default 127.0.0.1:2379) under a unique
// cluster name. Register, saver and coordinator are deliberately absent: the
// room must keep serving while its peers are down.

const (
	testSecretA = "secret-of-app-a-0123456789"
	testSecretB = "secret-of-app-b-0123456789"
	testMaxBody = 2048
	ioTimeout   = 5 * time.Second
)

type testEnv struct {
	t       *testing.T
	cli     *clientv3.Client
	cluster string
	cfg     config
	srv     *server
	deps    serverDeps
	stopped bool
}

// freeAddr is a loopback address the room can bind: internal/freeport
// never hands the same port out twice, unlike listen-then-close.
func freeAddr(t *testing.T) string {
	t.Helper()
	return freeport.Addr(t)
}

// testEngines are the engines every engine-level test runs on.
var testEngines = []string{engineGnet, engineStd}

// forEachEngine runs f as a subtest per engine.
func forEachEngine(t *testing.T, f func(t *testing.T, engine string)) {
	for _, eng := range testEngines {
		t.Run(eng, func(t *testing.T) { f(t, eng) })
	}
}

// startEnv starts one room on fresh ports in a fresh cluster.
func startEnv(t *testing.T, engine string, tweak func(*config)) *testEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{service.Env("ETCD", service.DefaultEtcd)}, 3*time.Second)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	cluster := fmt.Sprintf("roomtest-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer dcancel()
		_, _ = cli.Delete(dctx, "/pushgw/"+cluster+"/", clientv3.WithPrefix())
		cli.Close()
	})
	for _, a := range []appconfig.App{
		{Name: "appA", Secret: testSecretA, APIKey: "api-key-of-app-a-0123"},
		{Name: "appB", Secret: testSecretB, APIKey: "api-key-of-app-b-0123"},
	} {
		if err := appconfig.Put(ctx, cli, cluster, a); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	apps, err := appconfig.Load(ctx, cli, cluster, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(apps.Close)
	p, err := dialPeers(ctx, cli, cluster, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)

	cfg := config{
		common:         service.Common{Cluster: cluster, Instance: "room-test-1", IDC: "dc1"},
		tcp:            freeAddr(t),
		grpc:           freeAddr(t),
		heartbeat:      time.Second,
		missedBeats:    2,
		authTimeout:    time.Second,
		maxConns:       100,
		sendQueue:      16,
		maxFrame:       testMaxBody,
		sessionRefresh: time.Second,
		engine:         engine,
		authReplyWait:  defaultAuthReplyWait,
		maxPreAuth:     defaultMaxPreAuth,
		reportHold:     deliveredHold,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	deps := serverDeps{etcd: cli, log: log, registry: prometheus.NewRegistry(), secretOf: apps.Secret, peers: p, appOf: apps.Get}
	srv, err := startServer(ctx, cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{t: t, cli: cli, cluster: cluster, cfg: cfg, srv: srv, deps: deps}
	t.Cleanup(func() {
		if !env.stopped {
			env.srv.shutdown()
		}
	})
	return env
}

func (e *testEnv) token(app, secret, user, device string, exp time.Duration) string {
	e.t.Helper()
	tok, err := token.Mint([]byte(secret), token.Claims{App: app, User: user, Device: device, Expiry: time.Now().Add(exp)})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// tclient is a raw protocol client.
type tclient struct {
	t  *testing.T
	nc net.Conn
	r  *protocol.Reader
}

func (e *testEnv) dial() *tclient {
	e.t.Helper()
	nc, err := net.DialTimeout("tcp", e.cfg.tcp, ioTimeout)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { nc.Close() })
	return &tclient{t: e.t, nc: nc, r: protocol.NewReader(nc, protocol.MaxBodySizeLimit)}
}

func (c *tclient) writeRaw(b []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *tclient) write(op protocol.Op, seq uint32, msg proto.Message) {
	c.t.Helper()
	b, err := protocol.AppendMessage(nil, op, seq, msg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.writeRaw(b)
}

// read returns the next frame and its decoded body.
func (c *tclient) read() (protocol.Frame, proto.Message) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	f, err := c.r.Read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	m, err := protocol.DecodeBody(f)
	if err != nil {
		c.t.Fatalf("decode %s: %v", f.Op, err)
	}
	return f, m
}

func (c *tclient) auth(tok, device string) *clientpb.AuthReply {
	c.t.Helper()
	c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: tok, Device: device, Platform: "test"})
	f, m := c.read()
	if f.Op != protocol.OpAuthReply {
		c.t.Fatalf("got %s %v, want AUTH_REPLY", f.Op, m)
	}
	if f.Seq != 1 {
		c.t.Fatalf("AUTH_REPLY seq %d, want 1", f.Seq)
	}
	return m.(*clientpb.AuthReply)
}

// expectClosed asserts the server closed the connection.
func (c *tclient) expectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	_, err := c.r.Read()
	if err == nil {
		c.t.Fatal("connection still open: got another frame")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatal("connection still open after 5s")
	}
}

// expectError asserts an ERROR frame with code, then the close.
func (c *tclient) expectError(code protocol.Code) {
	c.t.Helper()
	f, m := c.read()
	if f.Op != protocol.OpError {
		c.t.Fatalf("got %s %v, want ERROR %s", f.Op, m, code)
	}
	if got := protocol.Code(m.(*clientpb.Error).GetCode()); got != code {
		c.t.Fatalf("ERROR %s (%q), want %s", got, m.(*clientpb.Error).GetMessage(), code)
	}
	c.expectClosed()
}

func (c *tclient) ping(seq uint32) {
	c.t.Helper()
	c.writeRaw(protocol.AppendFrame(nil, protocol.OpPing, 0, seq, nil))
	f, _ := c.read()
	if f.Op != protocol.OpPong || f.Seq != seq {
		c.t.Fatalf("got %s seq %d, want PONG seq %d", f.Op, f.Seq, seq)
	}
}

func connID(t *testing.T, sid string) uint64 {
	t.Helper()
	i := strings.LastIndexByte(sid, ':')
	id, err := strconv.ParseUint(sid[i+1:], 10, 64)
	if err != nil {
		t.Fatalf("session id %q: %v", sid, err)
	}
	return id
}

func TestAuthAndBadInput(t *testing.T) { forEachEngine(t, testAuthAndBadInput) }

func testAuthAndBadInput(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	good := e.dial()
	rep := good.auth(e.token("appA", testSecretA, "alice", "", time.Hour), "phone")
	if !strings.HasPrefix(rep.GetSessionId(), "room-test-1:") || rep.GetHeartbeatSeconds() != 1 || rep.GetMaxInflight() != 8 {
		t.Fatalf("AUTH_REPLY %v", rep)
	}
	good.ping(7)

	huge := protocol.AppendFrame(nil, protocol.OpAuth, 0, 1, make([]byte, testMaxBody+1))
	cases := []struct {
		name string
		send func(c *tclient)
		want protocol.Code
	}{
		{"bad token", func(c *tclient) {
			c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: "not.a.jwt"})
		}, protocol.CodeTokenInvalid},
		{"empty token", func(c *tclient) {
			c.write(protocol.OpAuth, 1, &clientpb.Auth{})
		}, protocol.CodeTokenInvalid},
		{"expired token", func(c *tclient) {
			c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: e.token("appA", testSecretA, "bob", "", -time.Hour)})
		}, protocol.CodeTokenExpired},
		{"unknown app", func(c *tclient) {
			c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: e.token("appZ", testSecretA, "bob", "", time.Hour)})
		}, protocol.CodeAppUnknown},
		{"other app's secret", func(c *tclient) {
			c.write(protocol.OpAuth, 1, &clientpb.Auth{Token: e.token("appB", testSecretA, "bob", "", time.Hour)})
		}, protocol.CodeTokenInvalid},
		{"oversize frame", func(c *tclient) { c.writeRaw(huge) }, protocol.CodeFrameTooLarge},
		{"garbage bytes", func(c *tclient) { c.writeRaw([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }, protocol.CodeBadFrame},
		{"bad version", func(c *tclient) {
			b := protocol.AppendFrame(nil, protocol.OpPing, 0, 1, nil)
			b[2] = 9
			c.writeRaw(b)
		}, protocol.CodeBadVersion},
		{"unknown op", func(c *tclient) {
			b := protocol.AppendFrame(nil, protocol.OpPing, 0, 1, nil)
			b[3] = 200
			c.writeRaw(b)
		}, protocol.CodeUnknownOp},
		{"frame before auth", func(c *tclient) {
			c.writeRaw(protocol.AppendFrame(nil, protocol.OpPing, 0, 1, nil))
		}, protocol.CodeAuthRequired},
		{"undecodable auth body", func(c *tclient) {
			c.writeRaw(protocol.AppendFrame(nil, protocol.OpAuth, 0, 1, []byte{0xff, 0xff, 0xff}))
		}, protocol.CodeBadBody},
		{"no auth in time", func(c *tclient) {}, protocol.CodeAuthTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial()
			tc.send(c)
			c.expectError(tc.want)
			// The authenticated connection is unaffected.
			good.ping(8)
		})
	}
}

func TestAuthenticatedErrors(t *testing.T) { forEachEngine(t, testAuthenticatedErrors) }

func testAuthenticatedErrors(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	tok := e.token("appA", testSecretA, "carol", "", time.Hour)

	c := e.dial()
	c.auth(tok, "d1")
	c.write(protocol.OpAuth, 2, &clientpb.Auth{Token: tok})
	c.expectError(protocol.CodeAlreadyAuthed)

	c = e.dial()
	c.auth(tok, "d2")
	c.writeRaw(protocol.AppendFrame(nil, protocol.OpAck, 0, 3, []byte{0x0a, 0xff}))
	c.expectError(protocol.CodeBadBody)

	c = e.dial()
	c.auth(tok, "d3")
	c.write(protocol.OpPush, 4, &clientpb.Push{Id: 1})
	c.expectError(protocol.CodeUnknownOp)

	// Acks are accepted (reported to the absent saver in the background).
	c = e.dial()
	c.auth(tok, "d4")
	c.write(protocol.OpAck, 5, &clientpb.Ack{Ids: []uint64{1, 2, 3}})
	c.ping(6)

	// Uplink with coordinator down: UNAVAILABLE, same seq, still connected.
	c.write(protocol.OpUplink, 42, &clientpb.Uplink{Route: "chat", Payload: []byte("hi")})
	f, m := c.read()
	if f.Op != protocol.OpUplinkReply || f.Seq != 42 || protocol.Code(m.(*clientpb.UplinkReply).GetCode()) != protocol.CodeUnavailable {
		t.Fatalf("got %s seq %d %v, want UPLINK_REPLY seq 42 UNAVAILABLE", f.Op, f.Seq, m)
	}
	c.ping(7)
}

func TestReplaceAndHeartbeat(t *testing.T) { forEachEngine(t, testReplaceAndHeartbeat) }

func testReplaceAndHeartbeat(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	tok := e.token("appA", testSecretA, "dave", "tablet", time.Hour)
	first := e.dial()
	first.auth(tok, "")
	second := e.dial()
	rep := second.auth(tok, "")

	f, m := first.read()
	if f.Op != protocol.OpKick || protocol.Code(m.(*clientpb.Kick).GetCode()) != protocol.CodeReplaced {
		t.Fatalf("first got %s %v, want KICK REPLACED", f.Op, m)
	}
	first.expectClosed()

	// second pings; a silent third times out after heartbeat x missed-beats.
	silent := e.dial()
	silent.auth(e.token("appA", testSecretA, "erin", "", time.Hour), "")
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		silent.expectError(protocol.CodeHeartbeatTimeout)
	}()
	for i := uint32(0); time.Since(start) < 3500*time.Millisecond; i++ {
		second.ping(100 + i)
		time.Sleep(300 * time.Millisecond)
	}
	<-done
	if took := time.Since(start); took < 2*time.Second-200*time.Millisecond {
		t.Fatalf("heartbeat timeout after %v, want >= 2s", took)
	}
	if e.srv.r.hub.Len() != 1 {
		t.Fatalf("hub holds %d connections, want 1", e.srv.r.hub.Len())
	}
	if _, ok := e.srv.r.hub.Get(connID(t, rep.GetSessionId())); !ok {
		t.Fatal("live session missing from the index")
	}
}

func TestRoomServicePushKick(t *testing.T) { forEachEngine(t, testRoomServicePushKick) }

func testRoomServicePushKick(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	cc, err := grpc.NewClient("passthrough:///"+e.cfg.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rc := internalpb.NewRoomClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := e.dial()
	id := connID(t, c.auth(e.token("appA", testSecretA, "frank", "", time.Hour), "p1").GetSessionId())
	target := &internalpb.Target{ConnId: id, App: "appA", User: "frank"}
	rep, err := rc.Push(ctx, &internalpb.RoomPushRequest{
		Message: &internalpb.Message{Id: 99, App: "appA", User: "frank", Payload: []byte("hello"), Qos: 1},
		Targets: []*internalpb.Target{target,
			{ConnId: id, App: "appA", User: "mallory"},
			{ConnId: id + 1000, App: "appA", User: "frank"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []internalpb.ResultCode{internalpb.ResultCode_RESULT_CODE_OK, internalpb.ResultCode_RESULT_CODE_NOT_FOUND, internalpb.ResultCode_RESULT_CODE_NOT_FOUND}
	for i, r := range rep.GetResults() {
		if r.GetCode() != want[i] {
			t.Fatalf("result %d = %v, want %v", i, r.GetCode(), want[i])
		}
	}
	f, m := c.read()
	if p, ok := m.(*clientpb.Push); f.Op != protocol.OpPush || !ok || p.GetId() != 99 || string(p.GetPayload()) != "hello" || p.GetQos() != 1 {
		t.Fatalf("got %s %v, want PUSH 99", f.Op, m)
	}

	// A client that stops reading becomes a slow consumer; others are unaffected.
	other := e.dial()
	oid := connID(t, other.auth(e.token("appA", testSecretA, "gina", "", time.Hour), "").GetSessionId())
	big := make([]byte, testMaxBody-100)
	targets := make([]*internalpb.Target, maxRPCTargets)
	for i := range targets {
		targets[i] = target
	}
	rep, err = rc.Push(ctx, &internalpb.RoomPushRequest{
		Message: &internalpb.Message{Id: 100, App: "appA", User: "frank", Payload: big}, Targets: targets,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Exactly one QUEUE_FULL; every target after it finds the connection
	// closing (CLOSED) or, once its reader has unbound it, gone (NOT_FOUND).
	counts := map[internalpb.ResultCode]int{}
	full := -1
	for i, r := range rep.GetResults() {
		counts[r.GetCode()]++
		switch {
		case r.GetCode() == internalpb.ResultCode_RESULT_CODE_QUEUE_FULL:
			full = i
		case full >= 0 && r.GetCode() != internalpb.ResultCode_RESULT_CODE_CLOSED && r.GetCode() != internalpb.ResultCode_RESULT_CODE_NOT_FOUND:
			t.Fatalf("result %d after QUEUE_FULL = %v, want CLOSED or NOT_FOUND", i, r.GetCode())
		}
	}
	if counts[internalpb.ResultCode_RESULT_CODE_QUEUE_FULL] != 1 || full == len(rep.GetResults())-1 {
		t.Fatalf("result counts %v, want one QUEUE_FULL followed by CLOSED/NOT_FOUND", counts)
	}
	other.ping(1)
	// Draining the socket ends in ERROR SLOW_CONSUMER and the close.
	for {
		f, m := c.read()
		if f.Op == protocol.OpPush {
			continue
		}
		if f.Op != protocol.OpError || protocol.Code(m.(*clientpb.Error).GetCode()) != protocol.CodeSlowConsumer {
			t.Fatalf("got %s %v, want ERROR SLOW_CONSUMER", f.Op, m)
		}
		break
	}
	c.expectClosed()

	// Kick.
	krep, err := rc.Kick(ctx, &internalpb.RoomKickRequest{Targets: []*internalpb.Target{{ConnId: oid, App: "appA", User: "gina"}}, Reason: "bye"})
	if err != nil || krep.GetResults()[0].GetCode() != internalpb.ResultCode_RESULT_CODE_OK {
		t.Fatalf("kick = %v, %v", krep, err)
	}
	f, m = other.read()
	if k, ok := m.(*clientpb.Kick); f.Op != protocol.OpKick || !ok || protocol.Code(k.GetCode()) != protocol.CodeKicked || k.GetReason() != "bye" {
		t.Fatalf("got %s %v, want KICK KICKED", f.Op, m)
	}
	other.expectClosed()
}

func TestMaxConns(t *testing.T) { forEachEngine(t, testMaxConns) }

func testMaxConns(t *testing.T, engine string) {
	e := startEnv(t, engine, func(c *config) { c.maxConns = 1 })
	first := e.dial()
	first.auth(e.token("appA", testSecretA, "hank", "", time.Hour), "")
	second := e.dial()
	second.expectError(protocol.CodeTooManyConnections)
	first.ping(1)
}

func TestDrain(t *testing.T) { forEachEngine(t, testDrain) }

func testDrain(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	key := discovery.Key(e.cluster, discovery.ServiceRoom, e.cfg.common.Instance)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("room not registered: %v %v", resp, err)
	}
	if !strings.Contains(string(resp.Kvs[0].Value), e.cfg.tcp) {
		t.Fatalf("registration %s lacks the tcp endpoint", resp.Kvs[0].Value)
	}
	a := e.dial()
	a.auth(e.token("appA", testSecretA, "ivy", "", time.Hour), "")
	b := e.dial() // not authenticated yet
	// A connection the engine has not opened yet when the drain begins is
	// not this test's case (gnet opens it on a loop a moment later).
	e.waitPreAuth(1)

	start := time.Now()
	e.stopped = true
	e.srv.shutdown()
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	for _, c := range []*tclient{a, b} {
		f, m := c.read()
		rd, ok := m.(*clientpb.Redirect)
		if f.Op != protocol.OpRedirect || !ok || len(rd.GetEndpoints()) != 0 || rd.GetBackoffMs() < 100 || rd.GetBackoffMs() > 1000 {
			t.Fatalf("got %s %v, want REDIRECT with back-off 100..1000ms", f.Op, m)
		}
		c.expectClosed()
	}
	resp, err = e.cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("room still registered after shutdown: %v %v", resp.Kvs, err)
	}
	if _, err := net.DialTimeout("tcp", e.cfg.tcp, time.Second); err == nil {
		t.Fatal("room still accepting after shutdown")
	}

	// The room closed first, so its side of each connection is in
	// TIME_WAIT: a restart on the same port must still bind.
	e.deps.registry = prometheus.NewRegistry()
	srv, err := startServer(ctx, e.cfg, e.deps)
	if err != nil {
		t.Fatalf("restart on %s: %v", e.cfg.tcp, err)
	}
	e.srv, e.stopped = srv, false
	e.dial().auth(e.token("appA", testSecretA, "ivy", "", time.Hour), "")
}

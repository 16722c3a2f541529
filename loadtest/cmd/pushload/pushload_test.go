package main

import (
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

func TestLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:1", "127.9.8.7:17300", "localhost:80", "127.0.0.1:1,127.0.0.2:2"} {
		if _, err := checkTCPAddrs(ok); err != nil {
			t.Errorf("checkTCPAddrs(%q) = %v, want ok", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1:1", "8.8.8.8:53", "example.com:80", "[::1]:80", "127.0.0.1:1,192.168.1.1:2", "", "127.0.0.1"} {
		if _, err := checkTCPAddrs(bad); err == nil {
			t.Errorf("checkTCPAddrs(%q) accepted", bad)
		}
	}
	if _, err := checkURL("http://127.0.0.1:17000/"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"https://127.0.0.1:1", "http://10.1.1.1:80", "http://pushgw.example:80"} {
		if _, err := checkURL(bad); err == nil {
			t.Errorf("checkURL(%q) accepted", bad)
		}
	}
	if _, err := checkSourceIPs("127.0.0.2,10.0.0.1"); err == nil {
		t.Error("checkSourceIPs accepted 10.0.0.1")
	}
}

func TestPerProcessLimit(t *testing.T) {
	_, err := parseConnsFlags([]string{"-secret", "s", "-n", "19000"})
	if err == nil || !strings.Contains(err.Error(), "-procs") {
		t.Fatalf("19000 connections in one process: err = %v, want a refusal naming -procs", err)
	}
	if _, err := parseConnsFlags([]string{"-secret", "s", "-n", "36000", "-procs", "2"}); err != nil {
		t.Fatalf("36000 over 2 procs: %v", err)
	}
	if _, err := parsePushFlags([]string{"-secret", "s", "-api-key", "k", "-users", "20000"}, false); err == nil {
		t.Fatal("push with 20000 users in one process accepted")
	}
}

func TestPercentiles(t *testing.T) {
	var l latencies
	for i := 1; i <= 1000; i++ {
		l.Add(time.Duration(i) * time.Millisecond)
	}
	p := l.Summary()
	if p.Count != 1000 || !within(p.P50, 500) || !within(p.P90, 900) || !within(p.P99, 990) || !within(p.Max, 1000) {
		t.Fatalf("summary = %+v, want 500/900/990/1000 ms within HDR's 0.1%%", p)
	}
	var empty latencies
	if s := empty.Summary(); s.Count != 0 || s.P99 != 0 {
		t.Fatalf("empty summary = %+v", s)
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics(strings.NewReader(`# HELP go_goroutines x
go_goroutines 18064
go_gc_duration_seconds{quantile="0.5"} 0.0012
go_gc_duration_seconds_sum 0.5
pushgw_room_auths_total{result="ok"} 3e+04
garbage line
`))
	if m["go_goroutines"] != 18064 || m[`go_gc_duration_seconds{quantile="0.5"}`] != 0.0012 ||
		m[`pushgw_room_auths_total{result="ok"}`] != 30000 || len(m) != 4 {
		t.Fatalf("parsed %v", m)
	}
	if _, err := parseCPUPIDs("center=1,saver"); err == nil {
		t.Fatal("parseCPUPIDs accepted a name without pid")
	}
}

// testRoom is a minimal peer speaking the client protocol: it verifies the
// token, answers AUTH, sends one QoS 1 PUSH and records the ACK and PINGs.
type testRoom struct {
	ln     net.Listener
	secret []byte
	reject protocol.Code

	mu    sync.Mutex
	acked []uint64
	pings int
}

func (r *testRoom) serve(t *testing.T) {
	for {
		nc, err := r.ln.Accept()
		if err != nil {
			return
		}
		go r.conn(t, nc)
	}
}

func (r *testRoom) conn(t *testing.T, nc net.Conn) {
	defer nc.Close()
	rd := protocol.NewReader(nc, 0)
	f, err := rd.Read()
	if err != nil || f.Op != protocol.OpAuth {
		t.Errorf("first frame: %v %v", f.Op, err)
		return
	}
	var a clientpb.Auth
	if err := proto.Unmarshal(f.Body, &a); err != nil {
		t.Error(err)
		return
	}
	c, err := token.Verify(a.GetToken(), func(string) ([]byte, bool) { return r.secret, true }, time.Now())
	if err != nil || c.App != "bench" {
		t.Errorf("token: %+v %v", c, err)
		return
	}
	if r.reject != 0 {
		nc.Write(protocol.ErrorFrame(nil, f.Seq, r.reject, "no"))
		return
	}
	out, _ := protocol.AppendMessage(nil, protocol.OpAuthReply, f.Seq, &clientpb.AuthReply{SessionId: c.User, HeartbeatSeconds: 1})
	out, _ = protocol.AppendMessage(out, protocol.OpPush, 0, &clientpb.Push{Id: 42, App: "bench", Payload: []byte("run|1|x"), Qos: 1})
	nc.Write(out)
	for {
		f, err := rd.Read()
		if err != nil {
			return
		}
		r.mu.Lock()
		switch f.Op {
		case protocol.OpAck:
			var ack clientpb.Ack
			_ = proto.Unmarshal(f.Body, &ack)
			r.acked = append(r.acked, ack.GetIds()...)
		case protocol.OpPing:
			r.pings++
		}
		r.mu.Unlock()
	}
}

func startTestRoom(t *testing.T, reject protocol.Code) *testRoom {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &testRoom{ln: ln, secret: []byte("0123456789abcdef-secret"), reject: reject}
	t.Cleanup(func() { ln.Close() })
	go r.serve(t)
	return r
}

func TestFleetConnectsAcksAndPings(t *testing.T) {
	room := startTestRoom(t, 0)
	var pushes sync.WaitGroup
	pushes.Add(3)
	fl := &fleet{d: &dialer{app: "bench", secret: room.secret, timeout: 2 * time.Second},
		addrs: []string{room.ln.Addr().String()}, onPush: func(p *clientpb.Push) { pushes.Done() }}
	var acks atomic.Int64
	fl.onAcked = func(p *clientpb.Push, at time.Time) {
		if p.GetId() == 42 && !at.IsZero() {
			acks.Add(1)
		}
	}
	stop := make(chan struct{})
	go fl.pinger(stop)
	fl.connectRange("u", 0, 3, 2, time.Now().Add(5*time.Second))
	if fl.ok.Load() != 3 || fl.Len() != 3 {
		t.Fatalf("connected %d, failures %v", fl.ok.Load(), fl.failures.Snapshot())
	}
	if time.Duration(fl.hb.Load()) != time.Second {
		t.Fatalf("heartbeat = %v, want the announced 1s", time.Duration(fl.hb.Load()))
	}
	pushes.Wait()
	// Each connection pings once per 0.75 heartbeat.
	time.Sleep(1600 * time.Millisecond)
	close(stop)
	fl.closeAll()
	room.mu.Lock()
	defer room.mu.Unlock()
	if len(room.acked) != 3 || room.acked[0] != 42 {
		t.Fatalf("acked %v, want 42 from each of 3 connections", room.acked)
	}
	if acks.Load() != 3 {
		t.Fatalf("onAcked told of %d ACKs, want 3", acks.Load())
	}
	if room.pings < 3 {
		t.Fatalf("pings = %d, want >= 3", room.pings)
	}
	if d := fl.drops.Snapshot(); len(d) != 0 {
		t.Fatalf("drops after our own close: %v", d)
	}
}

func TestConnectFailureCodes(t *testing.T) {
	room := startTestRoom(t, protocol.CodeTooManyConnections)
	d := &dialer{app: "bench", secret: room.secret, timeout: 2 * time.Second}
	_, err := d.connect(room.ln.Addr().String(), "u1")
	var ce *codeError
	if !errors.As(err, &ce) || failureKind(err) != "TOO_MANY_CONNECTIONS" {
		t.Fatalf("err = %v (%s), want TOO_MANY_CONNECTIONS", err, failureKind(err))
	}
	// A closed port.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if _, err := d.connect(addr, "u1"); failureKind(err) != "conn_refused" {
		t.Fatalf("closed port: %v (%s)", err, failureKind(err))
	}
}

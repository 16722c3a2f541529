package sdk

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// testRoom is a minimal protocol peer on a real loopback socket: it answers
// AUTH according to authFn, replies PONG to PING, and hands every connection
// to the test, which drives it with push/send/drop.
type testRoom struct {
	t         *testing.T
	ln        net.Listener
	heartbeat uint32
	// silent makes new connections never answer PING (to test dead-connection
	// detection); it is read once per connection.
	silent atomic.Bool
	// authFn decides the answer to an AUTH: nil accepts it.
	authFn func(a *clientpb.Auth) (protocol.Op, proto.Message)
	// replyFn, when set, builds the AUTH_REPLY of an accepted AUTH.
	replyFn func(a *clientpb.Auth) *clientpb.AuthReply
	conns   chan *roomConn

	mu    sync.Mutex
	auths []*clientpb.Auth
}

type roomConn struct {
	t      *testing.T
	c      net.Conn
	auth   *clientpb.Auth
	frames chan protocol.Frame
	pings  chan uint32
	wmu    sync.Mutex
}

func newTestRoom(t *testing.T) *testRoom {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &testRoom{t: t, ln: ln, heartbeat: 30, conns: make(chan *roomConn, 16)}
	t.Cleanup(func() { ln.Close() })
	go r.accept()
	return r
}

func (r *testRoom) addr() string { return r.ln.Addr().String() }

func (r *testRoom) authCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.auths)
}

func (r *testRoom) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go r.serve(c)
	}
}

func (r *testRoom) serve(c net.Conn) {
	rd := protocol.NewReader(bufio.NewReader(c), 0)
	f, err := rd.Read()
	if err != nil || f.Op != protocol.OpAuth {
		c.Close()
		return
	}
	m, err := protocol.DecodeBody(f)
	if err != nil {
		c.Close()
		return
	}
	auth := m.(*clientpb.Auth)
	r.mu.Lock()
	r.auths = append(r.auths, auth)
	r.mu.Unlock()
	rc := &roomConn{t: r.t, c: c, auth: auth, frames: make(chan protocol.Frame, 1024), pings: make(chan uint32, 1024)}
	if r.authFn != nil {
		if op, body := r.authFn(auth); op != protocol.OpAuthReply {
			rc.send(op, f.Seq, body)
			c.Close()
			return
		}
	}
	reply := &clientpb.AuthReply{SessionId: "s1", HeartbeatSeconds: r.heartbeat, MaxInflight: 1000}
	if r.replyFn != nil {
		reply = r.replyFn(auth)
	}
	// Read before the connection is handed to next(): a test that makes
	// only its first connection silent clears the flag right after next()
	// returns, and must not win the race against this connection.
	silent := r.silent.Load()
	rc.send(protocol.OpAuthReply, f.Seq, reply)
	r.conns <- rc
	for {
		f, err := rd.Read()
		if err != nil {
			close(rc.frames)
			return
		}
		if f.Op == protocol.OpPing {
			rc.pings <- f.Seq
			if !silent {
				rc.send(protocol.OpPong, f.Seq, nil)
			}
			continue
		}
		f.Body = append([]byte(nil), f.Body...)
		rc.frames <- f
	}
}

func (r *testRoom) next(t *testing.T) *roomConn {
	t.Helper()
	select {
	case rc := <-r.conns:
		return rc
	case <-time.After(5 * time.Second):
		t.Fatal("no client connection within 5s")
		return nil
	}
}

func (rc *roomConn) send(op protocol.Op, seq uint32, body proto.Message) {
	b, err := protocol.AppendMessage(nil, op, seq, body)
	if err != nil {
		rc.t.Error(err)
		return
	}
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	_, _ = rc.c.Write(b)
}

func (rc *roomConn) push(id uint64, qos uint32, payload string) {
	rc.send(protocol.OpPush, 0, &clientpb.Push{Id: id, App: "demo", Payload: []byte(payload), Qos: qos, CreatedMs: time.Now().UnixMilli()})
}

// expect returns the next non-PING frame, which must be op.
func (rc *roomConn) expect(t *testing.T, op protocol.Op, within time.Duration) proto.Message {
	t.Helper()
	select {
	case f, ok := <-rc.frames:
		if !ok {
			t.Fatalf("connection closed while waiting for %s", op)
		}
		if f.Op != op {
			t.Fatalf("got %s, want %s", f.Op, op)
		}
		m, err := protocol.DecodeBody(f)
		if err != nil {
			t.Fatal(err)
		}
		return m
	case <-time.After(within):
		t.Fatalf("no %s within %s", op, within)
		return nil
	}
}

// ackedIDs collects ACKed ids until want of them arrived, returning them
// and the number of ACK frames used.
func (rc *roomConn) ackedIDs(t *testing.T, want int) (map[uint64]int, int) {
	t.Helper()
	got := map[uint64]int{}
	total, frames := 0, 0
	for total < want {
		a := rc.expect(t, protocol.OpAck, 3*time.Second).(*clientpb.Ack)
		frames++
		for _, id := range a.Ids {
			got[id]++
			total++
		}
	}
	return got, frames
}

// noFrame checks nothing but PINGs arrives for d.
func (rc *roomConn) noFrame(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case f, ok := <-rc.frames:
		if ok {
			t.Fatalf("unexpected %s frame", f.Op)
		}
	case <-time.After(d):
	}
}

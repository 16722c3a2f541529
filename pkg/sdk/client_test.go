package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

type harness struct {
	c      *Client
	msgs   chan *Message
	states chan string
	done   chan error
	cancel context.CancelFunc
}

// start runs a client with a recording handler; cfg's Handler, if set, runs
// after the recording.
func start(t *testing.T, cfg Config, tweak ...func(*Client)) *harness {
	t.Helper()
	h := &harness{msgs: make(chan *Message, 1024), states: make(chan string, 64), done: make(chan error, 1)}
	user := cfg.Handler
	cfg.Handler = func(ctx context.Context, m *Message) error {
		if user != nil {
			if err := user(ctx, m); err != nil {
				return err
			}
		}
		h.msgs <- m
		return nil
	}
	cfg.OnState = func(s State, ep string) { h.states <- s.String() + " " + ep }
	if cfg.Token == "" && cfg.TokenFunc == nil {
		cfg.Token = "tok"
	}
	if cfg.App == "" {
		cfg.App, cfg.User, cfg.Device = "demo", "alice", "phone"
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tweak {
		f(c)
	}
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return h
}

func (h *harness) msg(t *testing.T) *Message {
	t.Helper()
	select {
	case m := <-h.msgs:
		return m
	case <-time.After(3 * time.Second):
		t.Fatal("handler not called within 3s")
		return nil
	}
}

func (h *harness) state(t *testing.T, want string) {
	t.Helper()
	select {
	case s := <-h.states:
		if s != want {
			t.Fatalf("state %q, want %q", s, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no state change within 5s, want %q", want)
	}
}

func (h *harness) runErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for Cleanup
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s")
		return nil
	}
}

func TestNewValidates(t *testing.T) {
	h := func(context.Context, *Message) error { return nil }
	for _, cfg := range []Config{
		{Endpoints: []string{"x:1"}, Token: "t"},
		{Handler: h, Token: "t"},
		{Handler: h, Endpoints: []string{"x:1"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Fatalf("New(%+v) accepted", cfg)
		}
	}
}

func TestAuthPushAckBatching(t *testing.T) {
	room := newTestRoom(t)
	h := start(t, Config{Endpoints: []string{room.addr()}, Platform: "test",
		Handler: func(_ context.Context, m *Message) error {
			if m.ID == 13 {
				return errors.New("cannot handle 13")
			}
			return nil
		}})
	rc := room.next(t)
	h.state(t, "connected "+room.addr())
	if rc.auth.Token != "tok" || rc.auth.Device != "phone" || rc.auth.Platform != "test" || rc.auth.SdkVersion != Version {
		t.Fatalf("AUTH = %v", rc.auth)
	}

	// 250 QoS 1 pushes in a burst: acks arrive in frames of at most 100 ids,
	// far fewer frames than messages.
	for id := uint64(1000); id < 1250; id++ {
		rc.push(id, 1, fmt.Sprint("m", id))
	}
	got, frames := rc.ackedIDs(t, 250)
	for id := uint64(1000); id < 1250; id++ {
		if got[id] != 1 {
			t.Fatalf("id %d acked %d times", id, got[id])
		}
	}
	if frames > 10 {
		t.Fatalf("250 acks took %d ACK frames; want batching", frames)
	}
	for i := 0; i < 250; i++ {
		if m := h.msg(t); m.ID != uint64(1000+i) || string(m.Payload) != fmt.Sprint("m", m.ID) || m.QoS != 1 || m.Created.IsZero() {
			t.Fatalf("message %d = %+v (out of order or wrong)", i, m)
		}
	}

	// QoS 0 is handed over and never acked; a failing handler means no ack.
	rc.push(7, 0, "typing")
	rc.push(13, 1, "fails")
	rc.push(14, 1, "ok")
	if m := h.msg(t); m.ID != 7 || m.QoS != 0 {
		t.Fatalf("got %+v", m)
	}
	if m := h.msg(t); m.ID != 14 {
		t.Fatalf("got %+v", m)
	}
	if a := rc.expect(t, protocol.OpAck, 3*time.Second).(*clientpb.Ack); len(a.Ids) != 1 || a.Ids[0] != 14 {
		t.Fatalf("ack = %v, want [14]", a.Ids)
	}
	// A failed message comes back later and is handled then.
	rc.push(13, 1, "fails")
	rc.noFrame(t, 100*time.Millisecond)
}

func TestDedupeRedelivery(t *testing.T) {
	room := newTestRoom(t)
	h := start(t, Config{Endpoints: []string{room.addr()}})
	rc := room.next(t)
	rc.push(42, 1, "once")
	h.msg(t)
	rc.ackedIDs(t, 1)
	rc.push(42, 1, "once") // redelivered: the first ack was "lost"
	if got, _ := rc.ackedIDs(t, 1); got[42] != 1 {
		t.Fatalf("redelivery not acked: %v", got)
	}
	select {
	case m := <-h.msgs:
		t.Fatalf("duplicate handed to handler: %+v", m)
	case <-time.After(50 * time.Millisecond):
	}

	// Dedupe survives reconnects: the set belongs to the client.
	rc.c.Close()
	h.state(t, "connected "+room.addr())
	h.state(t, "disconnected "+room.addr())
	rc2 := room.next(t)
	rc2.push(42, 1, "once")
	rc2.ackedIDs(t, 1)
	if len(h.msgs) != 0 {
		t.Fatal("duplicate handed to handler after reconnect")
	}
	if st := h.c.Stats(); st.Handled != 1 || st.Redelivered != 2 || st.Connects != 2 {
		t.Fatalf("stats %+v, want 1 handled, 2 redelivered, 2 connects", st)
	}
}

// Reconnect drops the live connection and Run dials again by itself.
func TestReconnectMethod(t *testing.T) {
	room := newTestRoom(t)
	h := start(t, Config{Endpoints: []string{room.addr()}})
	room.next(t)
	h.state(t, "connected "+room.addr())
	h.c.Reconnect()
	h.state(t, "disconnected "+room.addr())
	rc2 := room.next(t)
	h.state(t, "connected "+room.addr())
	rc2.push(7, 1, "after Reconnect")
	if m := h.msg(t); string(m.Payload) != "after Reconnect" {
		t.Fatal(m)
	}
	// The ACK follows the count, which follows the handler.
	rc2.ackedIDs(t, 1)
	if st := h.c.Stats(); st.Connects != 2 || st.Handled != 1 {
		t.Fatalf("stats %+v, want 2 connects and 1 handled", st)
	}
}

func TestDedupBounded(t *testing.T) {
	d := newDedup(3)
	for id := uint64(1); id <= 5; id++ {
		d.add(id)
	}
	d.add(5)
	if d.has(1) || d.has(2) || !d.has(3) || !d.has(4) || !d.has(5) || len(d.seen) != 3 {
		t.Fatalf("dedup after 5 adds of size 3: %v", d.seen)
	}
}

func TestBackoffFullJitter(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	for n := 0; n < 10; n++ {
		ceil := min(lo<<n, hi)
		var maxSeen time.Duration
		for i := 0; i < 200; i++ {
			d := backoff(n, lo, hi)
			if d < 0 || d > ceil {
				t.Fatalf("attempt %d: %s outside [0, %s]", n, d, ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < ceil/2 {
			t.Fatalf("attempt %d: max of 200 draws %s, ceiling %s: not spread", n, maxSeen, ceil)
		}
	}
	if d := redirectDelay(400, lo); d < 400*time.Millisecond || d > 500*time.Millisecond {
		t.Fatalf("redirect delay %s for a 400 ms hint", d)
	}
}

// Reconnect after the room drops the connection, through the dispatcher,
// whose first endpoint is dead and must be reported as failed.
func TestReconnectThroughDispatcher(t *testing.T) {
	room := newTestRoom(t)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()

	var mu sync.Mutex
	var queries []string
	disp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/endpoints" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		fmt.Fprintf(w, `{"endpoints":[%q,%q]}`, deadAddr, room.addr())
	}))
	defer disp.Close()

	h := start(t, Config{DispatcherURL: disp.URL, Endpoints: []string{"127.0.0.1:1"}})
	rc := room.next(t)
	h.state(t, "connected "+room.addr())
	t0 := time.Now()
	rc.c.Close()
	h.state(t, "disconnected "+room.addr())
	rc2 := room.next(t)
	h.state(t, "connected "+room.addr())
	if time.Since(t0) > 2*time.Second {
		t.Fatalf("reconnect took %s", time.Since(t0))
	}
	rc2.push(1, 1, "after reconnect")
	if m := h.msg(t); string(m.Payload) != "after reconnect" {
		t.Fatal(m)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(queries) < 2 {
		t.Fatalf("dispatcher asked %d times", len(queries))
	}
	if !strings.Contains(queries[0], "app=demo") || !strings.Contains(queries[0], "user=alice") || !strings.Contains(queries[0], "device=phone") || strings.Contains(queries[0], "failed=") {
		t.Fatalf("first query %q", queries[0])
	}
	if !strings.Contains(queries[1], "failed="+strings.ReplaceAll(deadAddr, ":", "%3A")) {
		t.Fatalf("second query %q does not report %s as failed", queries[1], deadAddr)
	}
}

func TestFallsBackToStaticEndpoints(t *testing.T) {
	room := newTestRoom(t)
	disp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer disp.Close()
	h := start(t, Config{DispatcherURL: disp.URL, Endpoints: []string{room.addr()}})
	room.next(t)
	h.state(t, "connected "+room.addr())
}

func TestRedirect(t *testing.T) {
	room1, room2 := newTestRoom(t), newTestRoom(t)
	h := start(t, Config{Endpoints: []string{room1.addr()}})
	rc := room1.next(t)
	h.state(t, "connected "+room1.addr())
	t0 := time.Now()
	rc.send(protocol.OpRedirect, 0, &clientpb.Redirect{Endpoints: []string{room2.addr()}, BackoffMs: 200, Reason: "drain"})
	room2.next(t)
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Fatalf("reconnected after %s, before the 200 ms back-off hint", d)
	}
	h.state(t, "disconnected "+room1.addr())
	h.state(t, "connected "+room2.addr())
}

func TestKickStops(t *testing.T) {
	room := newTestRoom(t)
	h := start(t, Config{Endpoints: []string{room.addr()}})
	rc := room.next(t)
	rc.push(5, 1, "before kick")
	h.msg(t)
	rc.send(protocol.OpKick, 0, &clientpb.Kick{Code: uint32(protocol.CodeReplaced), Reason: "logged in elsewhere"})
	err := h.runErr(t)
	var se *ServerError
	if !errors.Is(err, ErrKicked) || !errors.As(err, &se) || se.Code != protocol.CodeReplaced || se.Message != "logged in elsewhere" {
		t.Fatalf("Run = %v", err)
	}
	// The pending ack is flushed before the connection is closed.
	if got, _ := rc.ackedIDs(t, 1); got[5] != 1 {
		t.Fatalf("ack before kick: %v", got)
	}
	time.Sleep(50 * time.Millisecond)
	if n := room.authCount(); n != 1 {
		t.Fatalf("client reconnected after KICK: %d AUTHs", n)
	}
}

func TestFatalAuthError(t *testing.T) {
	for _, code := range []protocol.Code{protocol.CodeTokenInvalid, protocol.CodeAppUnknown} {
		room := newTestRoom(t)
		room.authFn = func(*clientpb.Auth) (protocol.Op, proto.Message) {
			return protocol.OpError, &clientpb.Error{Code: uint32(code), Message: "no"}
		}
		h := start(t, Config{Endpoints: []string{room.addr()}})
		err := h.runErr(t)
		var se *ServerError
		if !errors.As(err, &se) || se.Code != code || errors.Is(err, ErrKicked) {
			t.Fatalf("%s: Run = %v", code, err)
		}
		if n := room.authCount(); n != 1 {
			t.Fatalf("%s: %d AUTH attempts, want 1", code, n)
		}
	}
}

func TestTransientAuthErrorRetries(t *testing.T) {
	room := newTestRoom(t)
	var n atomic.Int32
	room.authFn = func(*clientpb.Auth) (protocol.Op, proto.Message) {
		if n.Add(1) == 1 {
			return protocol.OpError, &clientpb.Error{Code: uint32(protocol.CodeTooManyConnections)}
		}
		return protocol.OpAuthReply, nil
	}
	h := start(t, Config{Endpoints: []string{room.addr()}})
	room.next(t)
	h.state(t, "connected "+room.addr())
}

func TestTokenExpiredRefetches(t *testing.T) {
	room := newTestRoom(t)
	room.authFn = func(a *clientpb.Auth) (protocol.Op, proto.Message) {
		if a.Token != "fresh" {
			return protocol.OpError, &clientpb.Error{Code: uint32(protocol.CodeTokenExpired)}
		}
		return protocol.OpAuthReply, nil
	}
	var calls atomic.Int32
	h := start(t, Config{Endpoints: []string{room.addr()}, TokenFunc: func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			return "stale", nil
		}
		return "fresh", nil
	}})
	rc := room.next(t)
	if rc.auth.Token != "fresh" || calls.Load() != 2 {
		t.Fatalf("token %q after %d TokenFunc calls", rc.auth.Token, calls.Load())
	}
	h.state(t, "connected "+room.addr())

	// With a fixed token, TOKEN_EXPIRED cannot be fixed: Run stops.
	room2 := newTestRoom(t)
	room2.authFn = room.authFn
	h2 := start(t, Config{Endpoints: []string{room2.addr()}, Token: "stale"})
	var se *ServerError
	if err := h2.runErr(t); !errors.As(err, &se) || se.Code != protocol.CodeTokenExpired {
		t.Fatalf("Run = %v", err)
	}
}

func TestHeartbeat(t *testing.T) {
	room := newTestRoom(t)
	room.heartbeat = 1
	room.silent.Store(true)
	h := start(t, Config{Endpoints: []string{room.addr()}})
	rc := room.next(t)
	t0 := time.Now()
	for i := 0; i < 2; i++ {
		select {
		case <-rc.pings:
		case <-time.After(time.Second):
			t.Fatalf("ping %d not sent within 1s of the last (heartbeat 1s)", i)
		}
	}
	// The room never answers: the client must give up on the connection
	// after heartbeat + margin (1.5 s: two PINGs unanswered), not before,
	// and reconnect.
	room.silent.Store(false)
	h.state(t, "connected "+room.addr())
	h.state(t, "disconnected "+room.addr())
	if d := time.Since(t0); d < 1400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("dead connection noticed after %s, want about 1.5s", d)
	}
	room.next(t)
}

func TestCloseFlushesAcks(t *testing.T) {
	room := newTestRoom(t)
	h := start(t, Config{Endpoints: []string{room.addr()}}, func(c *Client) { c.ackDelay = time.Hour })
	rc := room.next(t)
	rc.push(77, 1, "x")
	rc.push(78, 1, "y")
	h.msg(t)
	h.msg(t)
	rc.noFrame(t, 50*time.Millisecond) // held back by the 1 h ack delay
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := rc.ackedIDs(t, 2); got[77] != 1 || got[78] != 1 {
		t.Fatalf("acks on Close: %v", got)
	}
	if err := h.runErr(t); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v", err)
	}
}

func TestUplink(t *testing.T) {
	room := newTestRoom(t)
	h := start(t, Config{Endpoints: []string{room.addr()}})
	if _, err := h.c.Uplink(context.Background(), "x", nil); !errors.Is(err, ErrNotConnected) && room.authCount() == 0 {
		t.Fatalf("Uplink before connect = %v", err)
	}
	rc := room.next(t)
	h.state(t, "connected "+room.addr())
	go func() {
		for f := range rc.frames {
			if f.Op != protocol.OpUplink {
				continue
			}
			m, _ := protocol.DecodeBody(f)
			u := m.(*clientpb.Uplink)
			if u.Route == "fail" {
				rc.send(protocol.OpUplinkReply, f.Seq, &clientpb.UplinkReply{Code: uint32(protocol.CodeUplinkNoWebhook), Message: "no webhook"})
				continue
			}
			if u.Route == "silent" {
				continue
			}
			rc.send(protocol.OpUplinkReply, f.Seq, &clientpb.UplinkReply{Payload: append([]byte("echo:"), u.Payload...)})
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprint("echo:", i)
			got, err := h.c.Uplink(context.Background(), "chat", []byte(fmt.Sprint(i)))
			if err != nil || string(got) != want {
				t.Errorf("Uplink %d = %q, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	var se *ServerError
	if _, err := h.c.Uplink(context.Background(), "fail", nil); !errors.As(err, &se) || se.Code != protocol.CodeUplinkNoWebhook {
		t.Fatalf("failing uplink = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := h.c.Uplink(ctx, "silent", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered uplink = %v", err)
	}
}

// A room that goes silent (a hung process still accepts connections) is
// reported as failed on the next dispatcher query, so the dispatcher puts
// it last and the client tries another room first.
func TestSilentRoomReportedFailed(t *testing.T) {
	room := newTestRoom(t)
	room.heartbeat = 1
	var mu sync.Mutex
	var queries []string
	disp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		fmt.Fprintf(w, `{"endpoints":[%q]}`, room.addr())
	}))
	defer disp.Close()
	room.silent.Store(true) // for the first connection only
	h := start(t, Config{DispatcherURL: disp.URL})
	room.next(t)
	room.silent.Store(false)
	h.state(t, "connected "+room.addr())
	h.state(t, "disconnected "+room.addr())
	room.next(t)
	h.state(t, "connected "+room.addr())
	mu.Lock()
	defer mu.Unlock()
	if len(queries) < 2 || !strings.Contains(queries[1], "failed="+strings.ReplaceAll(room.addr(), ":", "%3A")) {
		t.Fatalf("queries after a silent room: %q", queries)
	}
}

// With the dispatcher down, a client whose room died goes to another room
// of the dispatcher's last answer instead of having nowhere to go.
func TestFallsBackToLastDispatcherAnswer(t *testing.T) {
	roomA, roomB := newTestRoom(t), newTestRoom(t)
	var calls atomic.Int32
	disp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) > 1 {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"endpoints":[%q,%q]}`, roomA.addr(), roomB.addr())
	}))
	defer disp.Close()
	h := start(t, Config{DispatcherURL: disp.URL})
	rcA := roomA.next(t)
	h.state(t, "connected "+roomA.addr())
	roomA.ln.Close() // room A dies: no new connections, the live one drops
	rcA.c.Close()
	h.state(t, "disconnected "+roomA.addr())
	roomB.next(t)
	h.state(t, "connected "+roomB.addr())
	if calls.Load() < 2 {
		t.Fatal("the dispatcher was not asked again")
	}
}

func TestFallbackEndpointsOrder(t *testing.T) {
	got := fallbackEndpoints([]string{"a", "b"}, []string{"s", "a"}, []string{"a"})
	if strings.Join(got, ",") != "b,s,a" {
		t.Fatalf("fallback order %v, want the failed one last", got)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// TestBatchedDelivery sends many concurrent QoS 1 pushes through the API and
// checks that they reach exactly their targets through few Register
// lookups and Room calls.
func TestBatchedDelivery(t *testing.T) {
	e := newTestEnv(t)
	t.Cleanup(func() { _ = e.srv.batch.close(context.Background()) })
	p := &peers{}
	roomA, roomB := &room{offline: map[uint64]bool{}}, &room{}
	e.serveGRPC(discovery.ServiceRegister, "register-1", func(s *grpc.Server) { internalpb.RegisterRegisterServer(s, p) })
	e.serveGRPC(discovery.ServiceSaver, "saver-1", func(s *grpc.Server) { internalpb.RegisterSaverServer(s, p) })
	addrA := e.serveGRPC(discovery.ServiceRoom, "room-a", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, roomA) })
	addrB := e.serveGRPC(discovery.ServiceRoom, "room-b", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, roomB) })

	const users = 300
	// want[user] = connections a message to user must reach.
	want := map[string]map[uint64]bool{}
	for i := range users {
		u := fmt.Sprintf("u%d", i)
		addr, id := addrA, uint64(1000+i)
		if i%2 == 1 {
			addr = addrB
		}
		p.sessions = append(p.sessions, &internalpb.Session{App: "app1", User: u, Device: "d", RoomAddr: addr, ConnId: id})
		want[u] = map[uint64]bool{id: true}
		if i%10 == 0 { // a second device, in the other room
			p.sessions = append(p.sessions, &internalpb.Session{App: "app1", User: u, Device: "d2", RoomAddr: addrB, ConnId: uint64(5000 + i)})
			want[u][uint64(5000+i)] = true
		}
	}
	// Same user names in another app: must never get app1's messages.
	p.sessions = append(p.sessions, &internalpb.Session{App: "app2", User: "u1", RoomAddr: addrA, ConnId: 9001})
	// A connection the room no longer has: not counted as delivered.
	p.sessions = append(p.sessions, &internalpb.Session{App: "app1", User: "u2", Device: "gone", RoomAddr: addrA, ConnId: 9002})
	roomA.offline[9002] = true
	want["u2"][9002] = true

	waitFor(t, "rooms to be discovered", func() bool {
		e.srv.rooms.mu.RLock()
		defer e.srv.rooms.mu.RUnlock()
		return e.srv.rooms.known[addrA] && e.srv.rooms.known[addrB]
	})
	waitPeersDiscovered(t, e)
	// Register is slow while the requests come in (each lookup held until
	// they are all answered, or gateHold, well inside the lookup deadline),
	// so deliveries queue up as they would under load, however slowly a
	// busy box answers the pushes.
	gate := make(chan struct{})
	p.mu.Lock()
	p.lookups = 0
	p.gate = gate
	p.mu.Unlock()
	deliveredBefore := value(t, e.srv.m.delivered)

	const pushes, conc = 2 * users, 64
	ids := make(map[uint64]string, pushes)
	var idsMu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= pushes {
					return
				}
				u := fmt.Sprintf("u%d", i%users)
				r := e.postJSON("/v1/push", `{"user":"`+u+`","payload":"m","qos":1}`)
				if r.status != 200 {
					t.Errorf("push %d: %d %v", i, r.status, r.body)
					return
				}
				id, _ := strconv.ParseUint(r.body["id"].(string), 10, 64)
				idsMu.Lock()
				ids[id] = u
				idsMu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(gate)
	if t.Failed() {
		return
	}

	got := func() map[uint64]map[uint64]int {
		out := map[uint64]map[uint64]int{}
		for _, r := range []*room{roomA, roomB} {
			for _, pr := range r.pushes() {
				id := pr.GetMessage().GetId()
				if _, ok := ids[id]; !ok {
					continue
				}
				if out[id] == nil {
					out[id] = map[uint64]int{}
				}
				for _, tg := range pr.GetTargets() {
					out[id][tg.GetConnId()]++
				}
			}
		}
		return out
	}
	waitFor(t, "every message at its targets", func() bool { return len(got()) == pushes })
	time.Sleep(50 * time.Millisecond) // anything extra would show now
	for id, conns := range got() {
		u := ids[id]
		if len(conns) != len(want[u]) {
			t.Fatalf("message %d to %s reached %v, want %v", id, u, conns, want[u])
		}
		for c, n := range conns {
			if !want[u][c] || n != 1 {
				t.Fatalf("message %d to %s reached connection %d %d times, want %v once each", id, u, c, n, want[u])
			}
		}
	}

	p.mu.Lock()
	lookups := p.lookups
	p.mu.Unlock()
	roomA.mu.Lock()
	callsA := roomA.calls
	roomA.mu.Unlock()
	roomB.mu.Lock()
	callsB := roomB.calls
	roomB.mu.Unlock()
	t.Logf("%d pushes: %d lookups, %d + %d room calls", pushes, lookups, callsA, callsB)
	// Unbatched, each push costs one lookup and one call per room holding
	// a target: 600 lookups and 660 room calls. Batched, the queued
	// messages go in flushes of up to deliveryBatchMax.
	if lookups > pushes/20 || callsA+callsB > pushes/10 {
		t.Fatalf("%d pushes took %d lookups and %d room calls: not coalesced", pushes, lookups, callsA+callsB)
	}
	copies := 0
	for _, u := range ids {
		copies += len(want[u])
	}
	copies -= 2 // u2's gone connection, twice
	if d := value(t, e.srv.m.delivered) - deliveredBefore; int(d) != copies {
		t.Fatalf("delivered metric %v, want %d", d, copies)
	}
	if n := value(t, e.srv.m.inline); n != 0 {
		t.Fatalf("%v inline deliveries with a queue of %d", n, deliveryQueueSize)
	}
}

// TestBatchedDeliveryLegacyRoom: a room without PushBatch (mid rolling
// deploy) still gets its messages, one Push each.
func TestBatchedDeliveryLegacyRoom(t *testing.T) {
	e := newTestEnv(t)
	t.Cleanup(func() { _ = e.srv.batch.close(context.Background()) })
	p := &peers{}
	old := &room{legacy: true}
	e.serveGRPC(discovery.ServiceRegister, "register-1", func(s *grpc.Server) { internalpb.RegisterRegisterServer(s, p) })
	e.serveGRPC(discovery.ServiceSaver, "saver-1", func(s *grpc.Server) { internalpb.RegisterSaverServer(s, p) })
	addr := e.serveGRPC(discovery.ServiceRoom, "room-old", func(s *grpc.Server) { internalpb.RegisterRoomServer(s, old) })
	p.sessions = []*internalpb.Session{{App: "app1", User: "alice", RoomAddr: addr, ConnId: 7}}
	waitFor(t, "room to be discovered", func() bool {
		e.srv.rooms.mu.RLock()
		defer e.srv.rooms.mu.RUnlock()
		return e.srv.rooms.known[addr]
	})
	waitPeersDiscovered(t, e)
	r := e.postJSON("/v1/push/multi", `{"users":["alice","bob"],"payload":"hi","qos":1}`)
	if r.status != 200 {
		t.Fatalf("got %d %v", r.status, r.body)
	}
	id, _ := strconv.ParseUint(r.body["ids"].(map[string]any)["alice"].(string), 10, 64)
	waitFor(t, "delivery through Push", func() bool {
		for _, pr := range old.pushes() {
			if pr.GetMessage().GetId() == id && pr.GetTargets()[0].GetConnId() == 7 {
				return true
			}
		}
		return false
	})
	if n := value(t, e.srv.m.deliveryFails.WithLabelValues("room")); n != 0 {
		t.Fatalf("%v room errors for an Unimplemented fallback", n)
	}
}

func newTestBatcher(t *testing.T, deliver func(context.Context, []*internalpb.Message) (int, error)) *deliveryBatcher {
	return newDeliveryBatcher(deliver, newMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func testMessages(n int) []*internalpb.Message {
	out := make([]*internalpb.Message, n)
	for i := range out {
		out[i] = &internalpb.Message{Id: uint64(i + 1), App: "app1", User: "u"}
	}
	return out
}

// TestBatcherQueueFullThenClose: what does not fit is handed back (the
// request then delivers it inline); close delivers everything that was
// taken, exactly once, in batches of at most deliveryBatchMax.
func TestBatcherQueueFullThenClose(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[uint64]int{}
	b := newTestBatcher(t, func(_ context.Context, msgs []*internalpb.Message) (int, error) {
		<-release
		if len(msgs) == 0 || len(msgs) > deliveryBatchMax {
			t.Errorf("batch of %d", len(msgs))
		}
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			seen[m.GetId()]++
		}
		return len(msgs), nil
	})
	// At most the queue, the flushes in flight and the batch waiting for a
	// flush slot can be absorbed while deliveries are stuck.
	absorbable := deliveryQueueSize + (deliveryFlushers+1)*deliveryBatchMax
	msgs := testMessages(absorbable + 1000)
	rest := b.enqueue(msgs)
	if len(rest) < 1000 {
		t.Fatalf("%d of %d messages handed back, want at least 1000", len(rest), len(msgs))
	}
	taken := msgs[:len(msgs)-len(rest)]
	if rest[0] != msgs[len(taken)] {
		t.Fatal("the handed-back messages are not the tail")
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(taken) {
		t.Fatalf("%d messages delivered, %d taken", len(seen), len(taken))
	}
	for _, m := range taken {
		if seen[m.GetId()] != 1 {
			t.Fatalf("message %d delivered %d times", m.GetId(), seen[m.GetId()])
		}
	}
	if got := b.enqueue(msgs[:3]); len(got) != 3 {
		t.Fatalf("closed batcher took %d messages", 3-len(got))
	}
}

// TestBatcherCloseDeadline: deliveries stuck past the shutdown deadline are
// abandoned (their context is cancelled) and close returns.
func TestBatcherCloseDeadline(t *testing.T) {
	b := newTestBatcher(t, func(ctx context.Context, msgs []*internalpb.Message) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if rest := b.enqueue(testMessages(3 * deliveryBatchMax * deliveryFlushers)); len(rest) != 0 {
		t.Fatalf("%d handed back", len(rest))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := b.close(ctx); err == nil {
		t.Fatal("close met its deadline with deliveries stuck")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("close took %v", d)
	}
}

// TestBatcherWaitsForCompany: messages enqueued close together share one
// flush; a lone message is not held longer than the batch wait.
func TestBatcherWaitsForCompany(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	b := newTestBatcher(t, func(_ context.Context, msgs []*internalpb.Message) (int, error) {
		mu.Lock()
		batches = append(batches, len(msgs))
		mu.Unlock()
		return len(msgs), nil
	})
	defer b.close(context.Background())
	msgs := testMessages(50)
	for i := range msgs {
		b.enqueue(msgs[i : i+1])
	}
	start := time.Now()
	waitFor(t, "the flush", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range batches {
			n += s
		}
		return n == 50
	})
	mu.Lock()
	defer mu.Unlock()
	if len(batches) > 5 {
		t.Fatalf("50 messages enqueued back to back took %d flushes: %v", len(batches), batches)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("flush after %v", d)
	}
}

// value reads a counter.
func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

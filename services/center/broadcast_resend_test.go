package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// bcastRoom is a room's Broadcast endpoint that counts the broadcasts it
// took; everything else about the room is out of these tests.
type bcastRoom struct {
	internalpb.UnimplementedRoomServer
	mu  sync.Mutex
	got []uint64
}

func (r *bcastRoom) Broadcast(_ context.Context, req *internalpb.RoomBroadcastRequest) (*internalpb.RoomBroadcastReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, req.GetBroadcast().GetId())
	return &internalpb.RoomBroadcastReply{Reached: 3}, nil
}

func (r *bcastRoom) taken() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.got...)
}

// listUnreachableRoom lists a room in etcd at an address nothing listens
// on yet, as a room that just restarted is listed before it serves, and
// makes it the sender's only room. It returns the address.
func listUnreachableRoom(t *testing.T, e *testEnv, id string) string {
	t.Helper()
	addr := freeport.Addr(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	reg, err := discovery.Register(ctx, e.cli, e.cluster, discovery.Instance{Service: discovery.ServiceRoom, ID: id, Addr: addr}, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = reg.Close(c)
	})
	w := discovery.Watch(e.cli, e.cluster, discovery.ServiceRoom, log)
	t.Cleanup(w.Close)
	e.srv.bcast.rooms = w
	waitFor(t, "the room discovered", func() bool {
		e.srv.rooms.mu.RLock()
		known := e.srv.rooms.known[addr]
		e.srv.rooms.mu.RUnlock()
		return known && len(e.srv.bcast.liveRooms()) == 1
	})
	return addr
}

// A room center could not reach (nothing listened at its address yet) is
// sent the broadcast again within about a second of serving, not left to
// the sweep's resend after broadcastMinAge: saver records it done on the
// first claim-free try (attempts 0), and the room took it once.
func TestBroadcastRetriedOnUnreachableRoom(t *testing.T) {
	e, _ := realSaverEnv(t)
	addr := listUnreachableRoom(t, e, "room-a")
	r := e.postJSON("/v1/broadcast", `{"payload":"hi","qos":1}`)
	if r.status != 200 || r.body["rooms"] != float64(1) {
		t.Fatalf("broadcast: %d %v", r.status, r.body)
	}
	id, err := strconv.ParseUint(r.body["id"].(string), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first call refused", func() bool {
		return counterValue(e.srv.m.deliveryFails.WithLabelValues("broadcast_room")) >= 1
	})
	// The room comes up at its listed address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("serve the room at its listed address: %v", err)
	}
	rm := &bcastRoom{}
	gs := grpc.NewServer()
	internalpb.RegisterRoomServer(gs, rm)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	up := time.Now()
	waitFor(t, "the broadcast resent and confirmed", func() bool {
		return len(rm.taken()) == 1 && counterValue(e.srv.m.broadcastResends.WithLabelValues("ok")) == 1
	})
	t.Logf("resent %v after the room served", time.Since(up).Round(time.Millisecond))
	waitFor(t, "saver to record the room done", func() bool {
		st := e.do("GET", "/v1/messages/"+r.body["id"].(string), testKey, "", nil)
		rooms, _ := st.body["rooms"].([]any)
		if st.status != 200 || st.body["state"] != "done" || len(rooms) != 1 {
			return false
		}
		room := rooms[0].(map[string]any)
		if room["attempts"] != float64(0) {
			t.Fatalf("room claimed by a sweep, not resent at once: %v", room)
		}
		return room["state"] == "done" && room["reached"] == float64(3)
	})
	if err := e.srv.bcast.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rm.taken(); len(got) != 1 || got[0] != id {
		t.Fatalf("room took %v, want broadcast %d once", got, id)
	}
}

// A room that never comes up: the quick resends wait on the sender's
// context, so stopping center ends them at once instead of waiting them
// out; with -broadcast-resends 0 the failed call is the only one.
func TestBroadcastResendsEndAtStop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		resends int
	}{{"default", defaultBroadcastResends}, {"off", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			listUnreachableRoom(t, e, "room-a")
			e.srv.bcast.resends = broadcastResendDelays(tc.resends)
			b := &internalpb.Broadcast{Id: 7, App: "app1", Seq: 1, Payload: []byte("hi"), Qos: 1}
			e.srv.bcast.sendAll(b, e.srv.bcast.liveRooms())
			fails := e.srv.m.deliveryFails.WithLabelValues("broadcast_room")
			waitFor(t, "the first call refused", func() bool { return counterValue(fails) >= 1 })
			if tc.resends > 0 {
				// Its waits add up to 3.75 s, past the stop's 1 s.
				waitFor(t, "a resend waiting", func() bool { return e.srv.bcast.waiting.Load() == 1 })
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			if err := e.srv.bcast.stop(ctx); err != nil {
				t.Fatalf("stop waited out the resends: %v", err)
			}
			took := time.Since(start)
			resent := counterValue(e.srv.m.broadcastResends.WithLabelValues("ok")) + counterValue(e.srv.m.broadcastResends.WithLabelValues("failed"))
			t.Logf("stopped in %v after %v resends", took.Round(time.Millisecond), resent)
			if tc.resends == 0 && (resent != 0 || counterValue(fails) != 1) {
				t.Fatalf("with resends off: %v resends, %v failed calls; want 0 and 1", resent, counterValue(fails))
			}
			if resent > 1 {
				// Stopped within the first wait or the try right after it.
				t.Fatalf("%v resends before the stop; the stop should have ended the waits", resent)
			}
		})
	}
}

// -broadcast-resends: 4 by default with the waits the docs give, 0 off,
// beyond maxBroadcastResends refused (its waits would reach the sweep's).
func TestBroadcastResendsFlag(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := broadcastResendDelays(c.BroadcastResends)
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}
	if len(got) != len(want) {
		t.Fatalf("default waits %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("default waits %v, want %v", got, want)
		}
	}
	var total time.Duration
	for _, d := range broadcastResendDelays(maxBroadcastResends) {
		total += d
	}
	if total >= broadcastMinAge {
		t.Fatalf("%d resends wait %v, past the sweep's %v", maxBroadcastResends, total, broadcastMinAge)
	}
	if c, err := parseConfig([]string{"-broadcast-resends", "0"}); err != nil || len(broadcastResendDelays(c.BroadcastResends)) != 0 {
		t.Fatalf("-broadcast-resends 0: %v, %v", c.BroadcastResends, err)
	}
	for _, bad := range []string{"-1", strconv.Itoa(maxBroadcastResends + 1)} {
		if _, err := parseConfig([]string{"-broadcast-resends", bad}); err == nil {
			t.Fatalf("-broadcast-resends %s accepted", bad)
		}
	}
}

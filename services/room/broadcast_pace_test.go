package main

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// stampConn records when each frame was queued to it.
type stampConn struct {
	mu    sync.Mutex
	times []time.Time
}

func (c *stampConn) Send([]byte) error {
	c.mu.Lock()
	c.times = append(c.times, time.Now())
	c.mu.Unlock()
	return nil
}
func (c *stampConn) CloseWith([]byte) bool      { return true }
func (c *stampConn) Abort()                     {}
func (c *stampConn) RemoteAddr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:1") }

func (c *stampConn) stamps() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.times...)
}

// paceRoom is a room with n authenticated, caught-up connections of app
// "a" (and one of app "b" that must be skipped).
func paceRoom(t *testing.T, n int) (*broadcaster, []*stampConn) {
	t.Helper()
	r := &room{hub: newHub(), m: newMetrics(prometheus.NewRegistry()), cfg: config{maxFrame: 65536}}
	bc := &broadcaster{r: r, byID: map[uint64]*bcEntry{}}
	r.bc = bc
	conns := make([]*stampConn, n+1)
	for i := range conns {
		conns[i] = &stampConn{}
		s := &session{r: r, c: conns[i], id: uint64(i + 1)}
		s.key = sessionKey{app: "a", user: "u", device: "d"}
		if i == n {
			s.key.app = "b"
		}
		bc.seen.login(s, 0, 0)
		bc.seen.caughtUp(s)
		// Logged in long ago: AUTH_REPLY is out, so only pushes follow.
		s.set(flagReplied)
		s.set(flagAuthed)
		r.hub.AddConn(s)
	}
	return bc, conns
}

// span returns the first and last frame times over conns, and fails unless
// each got exactly one frame.
func span(t *testing.T, conns []*stampConn) (first, last time.Time) {
	t.Helper()
	for i, c := range conns {
		st := c.stamps()
		if len(st) != 1 {
			t.Fatalf("conn %d got %d frames, want 1", i, len(st))
		}
		if first.IsZero() || st[0].Before(first) {
			first = st[0]
		}
		if st[0].After(last) {
			last = st[0]
		}
	}
	return first, last
}

func TestPacedFanOutTakesNOverRate(t *testing.T) {
	const n, rate = 400, 1000
	bc, conns := paceRoom(t, n)
	e, err := bc.track(&internalpb.Broadcast{Id: 1, App: "a", Seq: 1, Payload: []byte("x"), Qos: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	reached, deferred, err := bc.fanOutPaced(ctx, e, rate)
	if err != nil || reached != n || deferred != 0 {
		t.Fatalf("reached %d deferred %d err %v", reached, deferred, err)
	}
	if got := e.reached.Load(); got != n {
		t.Fatalf("progress counter %d, want %d", got, n)
	}
	if len(conns[n].stamps()) != 0 {
		t.Fatal("a connection of another app got the broadcast")
	}
	first, last := span(t, conns[:n])
	// The first chunk goes at once, the last is due (n-chunk)/rate after
	// the fan-out started: 350 ms here. Unpaced, the same walk takes well
	// under a millisecond. The lower bound holds however slow the box (a
	// chunk never goes before its due time); the upper one is generous.
	want := time.Duration(n-pacedChunk(rate)) * time.Second / rate
	if got := last.Sub(t0); got < want {
		t.Fatalf("last delivery %v after the start, want at least %v", got, want)
	}
	if got := last.Sub(first); got > want+5*time.Second {
		t.Fatalf("deliveries spread over %v, want about %v", got, want)
	}
}

// A paced fan-out that cannot finish within the call's deadline stops
// before it, and a resend gives only the connections not yet given.
func TestPacedFanOutStopsAtDeadlineAndResumes(t *testing.T) {
	const n, rate = 300, 200 // 1.5 s in all
	bc, conns := paceRoom(t, n)
	e, err := bc.track(&internalpb.Broadcast{Id: 2, App: "a", Seq: 2, Payload: []byte("x"), Qos: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pacedStopMargin+500*time.Millisecond)
	reached, _, err := bc.fanOutPaced(ctx, e, rate)
	cancel()
	if !errors.Is(err, errPacedDeadline) || reached == 0 || reached >= n {
		t.Fatalf("first call: reached %d err %v, want a partial stop", reached, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rest, _, err := bc.fanOutPaced(ctx, e, rate)
	if err != nil || reached+rest != n {
		t.Fatalf("resend: reached %d+%d err %v, want %d in all", reached, rest, err, n)
	}
	span(t, conns[:n]) // each exactly once
}

func TestPacedBroadcastRefusesASecondRun(t *testing.T) {
	bc, _ := paceRoom(t, 1)
	if err := bc.startPaced(9); err != nil {
		t.Fatal(err)
	}
	if err := bc.startPaced(9); status.Code(err) != codes.Aborted {
		t.Fatalf("second run of one broadcast: %v, want Aborted", err)
	}
	for id := uint64(100); id < 100+maxPacedFanOuts-1; id++ {
		if err := bc.startPaced(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := bc.startPaced(1); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("past the bound: %v, want ResourceExhausted", err)
	}
	bc.endPaced(9)
	if err := bc.startPaced(1); err != nil {
		t.Fatalf("after one ended: %v", err)
	}
}

package test

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Limits the hostile tests run the room with, and what they rely on of
// the room's defaults (services/room/config.go).
const (
	hostileMaxConns = 200
	// roomFrameBurst is the room's default -frame-burst.
	roomFrameBurst = 100
	// floodPings is how many PINGs the flooder writes without reading.
	floodPings = 50_000
	// Bounds on what hostile clients may leave behind in the room once they
	// are gone: generous, so only a per-connection leak trips them.
	maxHeapGrowth      = 64 << 20
	maxGoroutineGrowth = 20
	maxFDGrowth        = 10
)

// TestHostile throws malformed, truncated, flooding and silent
// connections at one room while a well-behaved neighbour on the same room
// keeps pinging and receiving pushes; every hostile connection must end
// with its code and a close, and leave nothing behind.
func TestHostile(t *testing.T) {
	// A short resume window: a peer's EOF parks its session for a flash
	// reconnect (docs/protocol.md §4.4), and "cleaned up" means once the
	// window has passed.
	c := StartCluster(t, Options{Rooms: 1, ExtraRoomArg: []string{"-max-conns", strconv.Itoa(hostileMaxConns), "-resume-window", "1s"}})
	room, admin := c.RoomTCP[0], c.Procs[RoomName(0)].Admin
	good := startGoodNeighbour(t, c, room, "neighbour")
	good.check(t)
	// roomIdle waits until the neighbour is the room's only connection, so
	// a hostile connection that stayed open (or a leaked count) shows.
	roomIdle := func(t *testing.T) {
		t.Helper()
		Eventually(t, 10*time.Second, "room holds only the neighbour's connection", func() bool {
			return AdminValue(t, admin, "pushgw_room_connections") == 1
		})
	}

	t.Run("truncated AUTH body, then silence: AUTH_TIMEOUT at the auth deadline", func(t *testing.T) {
		rc := Dial(t, room)
		rc.Write(truncatedFrame(protocol.OpAuth, 4000, 100))
		start := time.Now()
		good.check(t)
		rc.ExpectErrorAndClose(protocol.CodeAuthTimeout)
		expectElapsed(t, start, time.Second, 8*time.Second)
		roomIdle(t)
	})

	t.Run("AUTH body trickled a byte at a time does not extend the auth deadline", func(t *testing.T) {
		rc := Dial(t, room)
		rc.Write(truncatedFrame(protocol.OpAuth, 4000, 0))
		stop := trickle(rc.Conn, 200*time.Millisecond)
		defer stop()
		start := time.Now()
		rc.ExpectErrorAndClose(protocol.CodeAuthTimeout)
		expectElapsed(t, start, time.Second, 8*time.Second)
		good.check(t)
		roomIdle(t)
	})

	t.Run("AUTH header announcing more than any AUTH needs is refused before its body", func(t *testing.T) {
		// Within -max-frame (64 KiB) but far above the largest valid AUTH:
		// a stranger must not make the room set aside 60 KiB by asking.
		rc := Dial(t, room)
		rc.Write(truncatedFrame(protocol.OpAuth, 60<<10, 0))
		rc.ExpectErrorAndClose(protocol.CodeFrameTooLarge)
		roomIdle(t)
	})

	t.Run("truncated frame after AUTH, then silence: HEARTBEAT_TIMEOUT, session removed", func(t *testing.T) {
		rc := Dial(t, room)
		rc.Auth(c.Token("trunc-after-auth", "phone", time.Hour))
		waitSession(t, c, "trunc-after-auth", 1)
		// An UPLINK announcing 30,000 bytes, of which 100 arrive.
		rc.Write(truncatedFrame(protocol.OpUplink, 30000, 100))
		start := time.Now()
		good.check(t)
		rc.ExpectErrorAndClose(protocol.CodeHeartbeatTimeout)
		expectElapsed(t, start, time.Second, 8*time.Second)
		waitSession(t, c, "trunc-after-auth", 0)
		roomIdle(t)
	})

	t.Run("frame trickled after AUTH is no sign of life: HEARTBEAT_TIMEOUT", func(t *testing.T) {
		rc := Dial(t, room)
		rc.Auth(c.Token("trickle-after-auth", "phone", time.Hour))
		rc.Write(truncatedFrame(protocol.OpUplink, 30000, 0))
		stop := trickle(rc.Conn, 200*time.Millisecond)
		defer stop()
		rc.ExpectErrorAndClose(protocol.CodeHeartbeatTimeout)
		waitSession(t, c, "trickle-after-auth", 0)
		good.check(t)
		roomIdle(t)
	})

	t.Run("header or body cut short, then EOF: connection and session cleaned up", func(t *testing.T) {
		cases := []struct {
			name   string
			authed bool
			bytes  []byte
		}{
			{"half a header before AUTH", false, truncatedFrame(protocol.OpAuth, 10, 0)[:7]},
			{"half an AUTH body", false, truncatedFrame(protocol.OpAuth, 2000, 500)},
			{"half a header after AUTH", true, truncatedFrame(protocol.OpPing, 0, 0)[:9]},
			{"half an UPLINK body after AUTH", true, truncatedFrame(protocol.OpUplink, 5000, 1000)},
		}
		for i, tc := range cases {
			user := "eof-" + strconv.Itoa(i)
			rc := Dial(t, room)
			if tc.authed {
				rc.Auth(c.Token(user, "phone", time.Hour))
				waitSession(t, c, user, 1)
			}
			rc.Write(tc.bytes)
			rc.Conn.Close()
			if tc.authed {
				waitSession(t, c, user, 0)
			}
			roomIdle(t)
		}
		good.check(t)
	})

	t.Run("PING flood without reading: RATE_LIMITED and closed, neighbour unaffected", func(t *testing.T) {
		before := ScrapeAdmin(t, admin)
		rc := Dial(t, room)
		rc.Auth(c.Token("flooder", "phone", time.Hour))
		flood := make([]byte, 0, floodPings*protocol.HeaderSize)
		for i := 1; i <= floodPings; i++ {
			flood = protocol.AppendFrame(flood, protocol.OpPing, 0, uint32(i), nil)
		}
		// Written in one go by another goroutine, never waiting for a PONG;
		// the write fails once the room has closed, which is the point.
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_ = rc.Conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
			_, _ = rc.Conn.Write(flood)
		}()
		pongs := 0
		for {
			f, m, err := rc.Read(10 * time.Second)
			if err != nil {
				t.Fatalf("flooder: read after %d PONGs: %v; want ERROR RATE_LIMITED", pongs, err)
			}
			if f.Op == protocol.OpPong {
				pongs++
				continue
			}
			if e, ok := m.(*clientpb.Error); !ok || protocol.Code(e.GetCode()) != protocol.CodeRateLimited {
				t.Fatalf("flooder: got %s %v after %d PONGs, want ERROR RATE_LIMITED", f.Op, m, pongs)
			}
			break
		}
		rc.ExpectClosed()
		<-wrote
		// The room answered the burst and stopped: with the average rate of
		// 100/s, a second of flooding could add at most 100 more.
		if pongs < roomFrameBurst/2 || pongs > 2*roomFrameBurst {
			t.Fatalf("flooder got %d PONGs for %d PINGs; want about the burst of %d", pongs, floodPings, roomFrameBurst)
		}
		after := ScrapeAdmin(t, admin)
		if d := after["pushgw_room_rate_limited_total"] - before["pushgw_room_rate_limited_total"]; d != 1 {
			t.Fatalf("pushgw_room_rate_limited_total grew by %v, want 1", d)
		}
		if d := after[`pushgw_room_frames_in_total{op="PING"}`] - before[`pushgw_room_frames_in_total{op="PING"}`]; d > floodPings/10 {
			t.Fatalf("room decoded %v PINGs of the flood; it should have closed after the burst", d)
		}
		waitSession(t, c, "flooder", 0)
		good.check(t)
		roomIdle(t)
	})

	// Last: it fills the room.
	t.Run("connections that never authenticate, up to the room's limit", func(t *testing.T) {
		roomIdle(t)
		before := ScrapeAdmin(t, admin)
		const extra = 40
		total := hostileMaxConns + extra
		type outcome struct {
			code protocol.Code
			err  error
		}
		results := make(chan outcome, total)
		var conns []net.Conn
		defer func() {
			for _, nc := range conns {
				nc.Close()
			}
		}()
		for i := 0; i < total; i++ {
			nc, err := net.DialTimeout("tcp", room, 5*time.Second)
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			conns = append(conns, nc)
			if i%2 == 1 {
				// Half of them start an AUTH and stop mid-frame.
				_, _ = nc.Write(truncatedFrame(protocol.OpAuth, 3000, 10))
			}
			go func() {
				code, err := firstErrorCode(nc, 20*time.Second)
				results <- outcome{code, err}
			}()
		}
		// Full: the neighbour is served all the same.
		good.check(t)

		counts := map[protocol.Code]int{}
		for i := 0; i < total; i++ {
			o := <-results
			if o.err != nil {
				t.Fatalf("silent connection: %v", o.err)
			}
			counts[o.code]++
		}
		accepted := hostileMaxConns - 1 // the neighbour holds one
		if counts[protocol.CodeAuthTimeout] != accepted || counts[protocol.CodeTooManyConnections] != total-accepted || len(counts) != 2 {
			t.Fatalf("outcomes %v; want %d AUTH_TIMEOUT and %d TOO_MANY_CONNECTIONS", counts, accepted, total-accepted)
		}
		for _, nc := range conns {
			nc.Close()
		}
		roomIdle(t)
		// The room takes new clients again.
		rc := Dial(t, room)
		rc.Auth(c.Token("after-the-storm", "phone", time.Hour))
		rc.Ping()
		good.check(t)
		rc.Conn.Close()
		roomIdle(t)

		var after map[string]float64
		Eventually(t, 15*time.Second, "room goroutines and descriptors back to where they were", func() bool {
			after = ScrapeAdmin(t, admin)
			return after["go_goroutines"] <= before["go_goroutines"]+maxGoroutineGrowth &&
				after["process_open_fds"] <= before["process_open_fds"]+maxFDGrowth
		})
		if d := after["pushgw_room_auth_timeouts_total"] - before["pushgw_room_auth_timeouts_total"]; d != float64(accepted) {
			t.Fatalf("pushgw_room_auth_timeouts_total grew by %v, want %d", d, accepted)
		}
		tooMany := `pushgw_room_error_closes_total{code="TOO_MANY_CONNECTIONS"}`
		if d := after[tooMany] - before[tooMany]; d != float64(total-accepted) {
			t.Fatalf("%s grew by %v, want %d", tooMany, d, total-accepted)
		}
		if g := after["go_memstats_heap_inuse_bytes"] - before["go_memstats_heap_inuse_bytes"]; g > maxHeapGrowth {
			t.Fatalf("room heap in use grew by %.1f MiB over %d hostile connections", g/(1<<20), total)
		}
		t.Logf("room after %d silent connections: heap in use %+.1f MiB, goroutines %v -> %v, fds %v -> %v",
			total, (after["go_memstats_heap_inuse_bytes"]-before["go_memstats_heap_inuse_bytes"])/(1<<20),
			before["go_goroutines"], after["go_goroutines"], before["process_open_fds"], after["process_open_fds"])
	})

	good.check(t)
}

// truncatedFrame returns a frame header announcing bodyLen bytes followed
// by only sent of them.
func truncatedFrame(op protocol.Op, bodyLen, sent int) []byte {
	h := protocol.AppendFrame(nil, op, 0, 1, nil)
	binary.BigEndian.PutUint32(h[10:14], uint32(bodyLen))
	return append(h, make([]byte, sent)...)
}

// trickle writes one byte every period until the connection fails or stop
// is called: a slow-loris client that is never quite silent.
func trickle(nc net.Conn, period time.Duration) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := nc.Write([]byte{0}); err != nil {
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-exited }) }
}

// expectElapsed fails unless the time since start is within [lo, hi].
func expectElapsed(t *testing.T, start time.Time, lo, hi time.Duration) {
	t.Helper()
	if d := time.Since(start); d < lo || d > hi {
		t.Fatalf("took %v, want %v..%v", d, lo, hi)
	}
}

// firstErrorCode reads frames from nc until an ERROR and returns its code;
// the connection must then be closed by the server.
func firstErrorCode(nc net.Conn, timeout time.Duration) (protocol.Code, error) {
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	r := protocol.NewReader(nc, protocol.DefaultMaxBodySize)
	for {
		f, err := r.Read()
		if err != nil {
			return 0, fmt.Errorf("no ERROR frame: %w", err)
		}
		if f.Op != protocol.OpError {
			continue
		}
		m, err := protocol.DecodeBody(f)
		if err != nil {
			return 0, err
		}
		code := protocol.Code(m.(*clientpb.Error).GetCode())
		if _, err := r.Read(); err == nil {
			return code, fmt.Errorf("frame after ERROR %s", code)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return code, fmt.Errorf("not closed after ERROR %s", code)
		}
		return code, nil
	}
}

// goodNeighbour is a well-behaved client beside the hostile ones: it pings
// every 300 ms, ACKs and records its pushes, and fails check if the room
// ever closed it or stopped answering.
type goodNeighbour struct {
	c    *Cluster
	rc   *RawClient
	user string

	wmu sync.Mutex // serialises writes (pings and acks)
	seq uint32

	mu     sync.Mutex
	pushes map[uint64]bool
	pongs  int
	err    error

	checked   int // pongs seen at the last check
	checks    int
	stop      chan struct{}
	readerEnd chan struct{}
	pingerEnd chan struct{}
}

const neighbourPing = 300 * time.Millisecond

func startGoodNeighbour(t *testing.T, c *Cluster, addr, user string) *goodNeighbour {
	t.Helper()
	n := &goodNeighbour{c: c, rc: Dial(t, addr), user: user, pushes: map[uint64]bool{},
		stop: make(chan struct{}), readerEnd: make(chan struct{}), pingerEnd: make(chan struct{})}
	n.rc.Auth(c.Token(user, "phone", time.Hour))
	waitSession(t, c, user, 1)
	go n.readLoop()
	go n.pingLoop()
	t.Cleanup(func() {
		close(n.stop)
		n.rc.Conn.Close()
		<-n.readerEnd
		<-n.pingerEnd
	})
	return n
}

func (n *goodNeighbour) write(frame []byte) error {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	_ = n.rc.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := n.rc.Conn.Write(frame)
	return err
}

func (n *goodNeighbour) nextSeq() uint32 {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	n.seq++
	return n.seq
}

func (n *goodNeighbour) fail(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.stop: // closed by the test's end
	default:
		if n.err == nil {
			n.err = err
		}
	}
}

func (n *goodNeighbour) readLoop() {
	defer close(n.readerEnd)
	for {
		f, m, err := n.rc.Read(30 * time.Second)
		if err != nil {
			n.fail(fmt.Errorf("neighbour read: %w", err))
			return
		}
		switch f.Op {
		case protocol.OpPong:
			n.mu.Lock()
			n.pongs++
			n.mu.Unlock()
		case protocol.OpPush:
			p := m.(*clientpb.Push)
			n.mu.Lock()
			n.pushes[p.GetId()] = true
			n.mu.Unlock()
			if p.GetQos() == 1 {
				ack, _ := protocol.AppendMessage(nil, protocol.OpAck, n.nextSeq(), &clientpb.Ack{Ids: []uint64{p.GetId()}})
				if err := n.write(ack); err != nil {
					n.fail(fmt.Errorf("neighbour ack: %w", err))
					return
				}
			}
		default:
			n.fail(fmt.Errorf("neighbour got %s %v", f.Op, m))
			return
		}
	}
}

func (n *goodNeighbour) pingLoop() {
	defer close(n.pingerEnd)
	tk := time.NewTicker(neighbourPing)
	defer tk.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tk.C:
			if err := n.write(protocol.AppendFrame(nil, protocol.OpPing, 0, n.nextSeq(), nil)); err != nil {
				n.fail(fmt.Errorf("neighbour ping: %w", err))
				return
			}
		}
	}
}

// check pushes one message to the neighbour and waits for it, and checks
// that PONGs kept coming since the last check and nothing went wrong.
func (n *goodNeighbour) check(t *testing.T) {
	t.Helper()
	n.checks++
	id := n.c.Push(n.user, 1, time.Hour, "check "+strconv.Itoa(n.checks))
	Eventually(t, 10*time.Second, "neighbour receives push "+strconv.Itoa(n.checks), func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.err != nil {
			t.Fatalf("neighbour: %v", n.err)
		}
		return n.pushes[id]
	})
	Eventually(t, 5*time.Second, "neighbour gets a PONG", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.pongs <= n.checked {
			return false
		}
		n.checked = n.pongs
		return true
	})
}

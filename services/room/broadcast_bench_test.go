package main

import (
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// countConn takes frames and counts them: the fan-out's own cost, without
// the engine's socket writes.
type countConn struct{ n atomic.Int64 }

func (c *countConn) Send([]byte) error          { c.n.Add(1); return nil }
func (c *countConn) CloseWith([]byte) bool      { return true }
func (c *countConn) Abort()                     {}
func (c *countConn) RemoteAddr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:1") }

// benchBroadcastConns is the headline single-room count of the targets.
const benchBroadcastConns = 18_000

// BenchmarkBroadcastFanOut is one broadcast to 18,000 authenticated
// connections of one room (plus 2,000 of another app it must skip): the
// walk over the hub, the per-connection seen bits and the queueing of one
// shared frame. deliveries/s is per core, since the loop is serial.
func BenchmarkBroadcastFanOut(b *testing.B) {
	r := &room{hub: newHub(), m: newMetrics(prometheus.NewRegistry()), cfg: config{maxFrame: 65536}}
	bc := &broadcaster{r: r, byID: map[uint64]*bcEntry{}}
	r.bc = bc
	cc := &countConn{}
	for i := 0; i < benchBroadcastConns+2000; i++ {
		s := &session{r: r, c: cc, id: uint64(i + 1)}
		s.key = sessionKey{app: "bench", user: "u", device: "d"}
		if i >= benchBroadcastConns {
			s.key.app = "other"
		}
		bc.seen.login(s, 0, 0)
		bc.seen.caughtUp(s)
		// Logged in long ago: AUTH_REPLY is out, so only pushes follow.
		s.set(flagReplied)
		s.set(flagAuthed)
		r.hub.AddConn(s)
	}
	payload := make([]byte, 64)
	b.ReportAllocs()
	seq := uint64(0)
	cpu0 := cpuTime()
	for b.Loop() {
		seq++
		e, err := bc.track(&internalpb.Broadcast{Id: seq, App: "bench", Seq: seq, Payload: payload, Qos: 1})
		if err != nil {
			b.Fatal(err)
		}
		if reached, _ := bc.fanOut(e); reached != benchBroadcastConns {
			b.Fatalf("reached %d", reached)
		}
	}
	// On a shared box wall time mostly measures waiting for a core; the
	// process's CPU time is what the fan-out costs.
	cpu := (cpuTime() - cpu0).Seconds()
	b.ReportMetric(float64(benchBroadcastConns)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(benchBroadcastConns)*float64(b.N)/cpu, "deliveries/cpu-s")
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

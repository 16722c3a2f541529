package main

import (
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// A paced room call's deadline covers the pace, bounded by the
// broadcast's expiry and broadcastPacedTimeout, never below the unpaced
// deadline.
func TestBroadcastRoomTimeout(t *testing.T) {
	now := time.Now()
	exp := func(d time.Duration) *internalpb.Broadcast {
		return &internalpb.Broadcast{ExpiresMs: now.Add(d).UnixMilli()}
	}
	for _, c := range []struct {
		name  string
		b     *internalpb.Broadcast
		share uint32
		want  time.Duration
	}{
		{"unpaced", exp(time.Hour), 0, broadcastRoomTimeout},
		{"paced, long ttl", exp(time.Hour), 100, broadcastPacedTimeout},
		{"paced, no expiry", &internalpb.Broadcast{}, 100, broadcastPacedTimeout},
		{"paced, expires in 2 min", exp(2 * time.Minute), 100, 2 * time.Minute},
		{"paced, expires in 1 s", exp(time.Second), 100, broadcastRoomTimeout},
	} {
		got := roomTimeout(c.b, c.share, now)
		if d := got - c.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

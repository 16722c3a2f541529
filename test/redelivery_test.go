package test

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A QoS 1 message whose live delivery failed reaches a client that stays
// connected, through center's redelivery sweep, without a reconnect.
func TestRedeliveryToConnectedClient(t *testing.T) {
	// Heartbeats far longer than the room's pause, so stopping it does not
	// close the client's connection.
	c := StartCluster(t, Options{Rooms: 1, Heartbeat: 5 * time.Second, MissedBeats: 3})
	rc := Dial(t, c.RoomTCP[0])
	rc.Auth(c.Token("stays", "phone", time.Hour))
	stopPing := keepPinging(t, rc, time.Second)
	defer stopPing()
	waitSession(t, c, "stays", 1)

	// Center has not yet talked to the room (nothing was pushed), so its
	// gRPC connection cannot finish the HTTP/2 handshake while the room is
	// stopped: the push is never sent, rather than sent and then applied
	// late after SIGCONT. Live delivery is lost for sure, and only the
	// sweep can bring the message.
	room := RoomName(0)
	c.Signal(room, syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			c.Signal(room, syscall.SIGCONT)
		}
	}()
	id := c.Push("stays", 1, time.Hour, "missed-live")
	// Resume only once center has given the live delivery up.
	Eventually(t, 15*time.Second, "center to give up delivering "+strconv.FormatUint(id, 10), func() bool {
		for _, line := range strings.Split(c.Tail("center", 100), "\n") {
			if strings.Contains(line, "room push batch failed") && strings.Contains(line, strconv.FormatUint(id, 10)) {
				return true
			}
		}
		return false
	})
	c.Signal(room, syscall.SIGCONT)
	stopped = false

	for {
		p, err := rc.NextPush(30 * time.Second)
		if err != nil {
			t.Fatalf("message %d never redelivered to the connected client: %v", id, err)
		}
		if p.GetId() == id {
			if string(p.GetPayload()) != "missed-live" {
				t.Fatalf("payload %q", p.GetPayload())
			}
			t.Logf("redelivered %v after the push", time.Since(time.UnixMilli(p.GetCreatedMs())).Round(time.Millisecond))
			return
		}
	}
}

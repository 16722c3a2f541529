package test

import (
	"syscall"
	"testing"
	"time"
)

func roomIndex(c *Cluster, ep string) int {
	for i, a := range c.RoomTCP {
		if a == ep {
			return i
		}
	}
	return -1
}

func TestRoomFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{"kill -9", syscall.SIGKILL},
		{"SIGTERM drain with REDIRECT", syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := StartCluster(t, Options{Rooms: 2, Heartbeat: time.Second})
			cl := startSDK(t, c, "mover", "phone")
			Eventually(t, 10*time.Second, "SDK connected", func() bool { return cl.Endpoint() != "" })
			first := roomIndex(c, cl.Endpoint())
			if first < 0 {
				t.Fatalf("connected to %q, not a room of this cluster", cl.Endpoint())
			}
			id1 := c.Push("mover", 1, time.Hour, "before")
			Eventually(t, 10*time.Second, "first message", func() bool { return cl.Count(id1) == 1 })
			Eventually(t, 10*time.Second, "first message acked", func() bool { return c.Status(id1) == "acked" })

			if tc.sig == syscall.SIGKILL {
				c.Kill(RoomName(first))
			} else {
				c.Stop(RoomName(first))
			}
			// Pushed while the client is between rooms: stored, then
			// delivered on reconnect (or directly, whichever comes first).
			id2 := c.Push("mover", 1, time.Hour, "during")
			Eventually(t, 20*time.Second, "SDK reconnected to the other room", func() bool {
				i := roomIndex(c, cl.Endpoint())
				return i >= 0 && i != first
			})
			id3 := c.Push("mover", 1, time.Hour, "after")
			Eventually(t, 20*time.Second, "pending and new messages delivered", func() bool {
				return cl.Count(id2) == 1 && cl.Count(id3) == 1
			})
			Eventually(t, 10*time.Second, "all acked", func() bool {
				return c.Status(id2) == "acked" && c.Status(id3) == "acked"
			})
			if n := cl.Count(id1); n != 1 {
				t.Fatalf("message %d handed to the app %d times, want once", id1, n)
			}
		})
	}
}

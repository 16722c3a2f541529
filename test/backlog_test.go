package test

import (
	"fmt"
	"testing"
	"time"
)

// backlogSize is more than two pages of pending messages (a page is half
// the room's default send queue: 64).
const backlogSize = 150

// noSweep keeps center's redelivery sweep out of a test, so what arrives
// came by the path under test.
var noSweep = []string{"-redeliver-interval", "1h"}

// A user who comes back to a backlog longer than one page gets all of it
// on the one connection, page after page as the SDK acks.
func TestBacklogLargerThanAPage(t *testing.T) {
	c := StartCluster(t, Options{ExtraCenterArg: noSweep})
	ids := make([]uint64, backlogSize)
	for i := range ids {
		ids[i] = c.Push("backlog", 1, time.Hour, fmt.Sprintf("m%d", i))
	}
	cl := startSDK(t, c, "backlog", "phone")
	Eventually(t, 30*time.Second, "every message of the backlog handled once", func() bool {
		for _, id := range ids {
			if cl.Count(id) != 1 {
				return false
			}
		}
		return true
	})
	if n := cl.Stats().Connects; n != 1 {
		t.Fatalf("%d connects, want all of the backlog on the first", n)
	}
}

// A pull that fails at login (saver down) is tried again while the
// connection lives: the backlog arrives once saver is back, without a
// reconnect.
func TestPendingPullRetriedAfterSaverOutage(t *testing.T) {
	c := StartCluster(t, Options{ExtraCenterArg: noSweep})
	id := c.Push("retry-pull", 1, time.Hour, "stored while away")
	c.Kill("saver")
	cl := startSDK(t, c, "retry-pull", "phone")
	Eventually(t, 10*time.Second, "client connected", func() bool { return cl.Endpoint() != "" })
	// The login's pull has reached saver's absence (not merely been
	// scheduled): without a failed Saver.Pending the retry path is not
	// what delivers below.
	Eventually(t, 15*time.Second, "the login's pending pull failed", func() bool {
		// Pulls go in batches (services/room/pending_batch.go); one by
		// one only against a saver without PendingBatch.
		return c.RoomsValue(t, `pushgw_room_peer_errors_total{method="Saver.PendingBatch"}`)+
			c.RoomsValue(t, `pushgw_room_peer_errors_total{method="Saver.Pending"}`) >= 1
	})
	c.Start("saver")
	Eventually(t, 20*time.Second, "the stored message handled after saver's restart", func() bool { return cl.Count(id) == 1 })
	if n := cl.Stats().Connects; n != 1 {
		t.Fatalf("%d connects, want the message on the first", n)
	}
}

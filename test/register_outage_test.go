package test

import (
	"testing"
	"time"
)

// A login while register is down becomes visible to center soon after
// register is back, not at the next session refresh (an hour here), and
// what was pushed meanwhile arrives without a reconnect. The sweep is off,
// so only that path can deliver.
func TestLoginDuringRegisterOutage(t *testing.T) {
	c := StartCluster(t, Options{ExtraCenterArg: noSweep, ExtraRoomArg: []string{"-session-refresh", "1h"}})
	c.Kill("register")
	cl := startSDK(t, c, "reg-outage", "phone")
	Eventually(t, 10*time.Second, "client connected", func() bool { return cl.Endpoint() != "" })
	// The login's put has been given up (all its attempts failed), so the
	// session can only reach register by the put retries under test.
	Eventually(t, 15*time.Second, "the login's Register.Put batch failed", func() bool {
		return c.RoomsValue(t, `pushgw_room_batch_failed_total{batch="register"}`) >= 1
	})
	c.Start("register")
	id := c.Push("reg-outage", 1, time.Hour, "pushed once register was back")
	Eventually(t, 20*time.Second, "the message handled", func() bool { return cl.Count(id) == 1 })
	if n := cl.Stats().Connects; n != 1 {
		t.Fatalf("%d connects, want the message on the first", n)
	}
}

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
	time.Sleep(time.Second) // the login's put has failed by now
	c.Start("register")
	id := c.Push("reg-outage", 1, time.Hour, "pushed once register was back")
	Eventually(t, 20*time.Second, "the message handled", func() bool { return cl.Count(id) == 1 })
	if n := cl.Stats().Connects; n != 1 {
		t.Fatalf("%d connects, want the message on the first", n)
	}
}

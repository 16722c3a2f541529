package test

import (
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/protocol"
)

// One device, register down when the second device logs in: the room's
// policy lookup fails and is retried in the background
// (services/room/policy_retry.go), so once register is back the older
// login is still kicked with REPLACED, and the newer one stays.
func testLoginPolicyRegisterDown(t *testing.T, c *Cluster) {
	c.policyInForce(t, appconfig.LoginOne)
	defer c.updateApp(c.App, func(a *appconfig.App) { a.LoginPolicy = "" })
	older := c.loginOn(t, 1, "solo-down", "tablet", "android/14")
	c.Kill("register")
	restarted := false
	defer func() {
		if !restarted {
			c.Start("register") // later subtests need it
		}
	}()
	newer := c.loginOn(t, 0, "solo-down", "phone", "ios/17.4")
	// Both stay alive (heartbeats) while the newer login's lookup fails
	// and its retry is scheduled.
	retries := func() float64 { return c.RoomsValue(t, `pushgw_room_login_policy_retries_total`) }
	before := retries()
	Eventually(t, 30*time.Second, "the policy lookup failed and is being retried", func() bool {
		older.Ping()
		newer.Ping()
		return retries() > before
	})
	c.Start("register")
	restarted = true
	deadline := time.Now().Add(40 * time.Second)
	kicked := false
	for !kicked && time.Now().Before(deadline) {
		newer.Ping()
		older.Send(protocol.OpPing, nil)
		kicked = kickedWithin(t, older, 2*time.Second)
	}
	if !kicked {
		t.Fatal("the older login was not kicked once register was back")
	}
	newer.Ping()
}

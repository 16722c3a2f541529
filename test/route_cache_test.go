package test

import (
	"testing"
	"time"
)

// A connected user keeps getting pushes while register is down: center
// delivers by its last lookup answer (services/center/routes.go). A user
// center never looked up waits for register's return. The sweep is off,
// so only live delivery and its retrier can deliver.
func TestDeliveryWhileRegisterDown(t *testing.T) {
	c := StartCluster(t, Options{ExtraCenterArg: noSweep})
	known := startSDK(t, c, "route-known", "phone")
	unknown := startSDK(t, c, "route-unknown", "phone")
	Eventually(t, 10*time.Second, "clients connected", func() bool { return known.Endpoint() != "" && unknown.Endpoint() != "" })
	// Delivered through a lookup, so center remembers where the user is.
	first := c.Push("route-known", 1, time.Hour, "before the outage")
	Eventually(t, 10*time.Second, "first message handled", func() bool { return known.Count(first) == 1 })

	c.Kill("register")
	during := c.Push("route-known", 1, time.Hour, "while register is down")
	waiting := c.Push("route-unknown", 1, time.Hour, "waits for register")
	Eventually(t, 10*time.Second, "delivered while register is down", func() bool { return known.Count(during) == 1 })
	center := c.Procs[CenterName(0)].Admin
	if hit := AdminValue(t, center, `pushgw_center_route_cache_total{result="hit"}`); hit < 1 {
		t.Fatalf("route cache hits %v, want the delivery to come from the cache", hit)
	}
	Eventually(t, 10*time.Second, "the unknown user counted as a miss", func() bool {
		return ScrapeAdmin(t, center)[`pushgw_center_route_cache_total{result="miss"}`] >= 1
	})
	// No lookup can place this user while register is down.
	if n := unknown.Count(waiting); n != 0 {
		t.Fatalf("a user center never looked up got the message %d times while register was down", n)
	}
	c.Start("register")
	Eventually(t, 20*time.Second, "the waiting message handled once register is back", func() bool { return unknown.Count(waiting) == 1 })
	if known.Count(during) != 1 || known.Count(first) != 1 {
		t.Fatalf("known user got first %d, during %d times; want once each", known.Count(first), known.Count(during))
	}
}

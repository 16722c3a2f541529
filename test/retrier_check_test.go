package test

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// Scores pushed to an offline user while register is down go to center's
// retrier (center cannot tell whether the user is online). The newest
// replaces the older ones by its collapse key; when the user logs in once
// register is back, the retrier's next round must not push the collapsed
// scores live: the client only ever sees the newest (the CI failure of
// TestCollapseKeyOfflineUser, where the retrier pushed a collapsed
// message). The sweep is off, so only the retrier and the login pull can
// deliver.
func TestRetrierNeverPushesCollapsed(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, ExtraCenterArg: noSweep})
	Eventually(t, 10*time.Second, "center to reach saver", func() bool {
		code, _ := c.API("POST", "/v1/push", map[string]any{"user": "nobody", "payload": "x"})
		return code == 200
	})
	c.Kill("register")
	var ids []uint64
	for i := 1; i <= 3; i++ {
		code, out := c.API("POST", "/v1/push", map[string]any{"user": "fan", "payload": fmt.Sprintf("score %d:0", i), "collapse_key": "score"})
		if code != 200 {
			t.Fatalf("push %d: %d %v", i, code, out)
		}
		id, _ := strconv.ParseUint(out["id"].(string), 10, 64)
		ids = append(ids, id)
	}
	admin := c.Procs["center"].Admin
	Eventually(t, 5*time.Second, "the pushes queued for a retry", func() bool {
		return ScrapeAdmin(t, admin)["pushgw_center_delivery_retries_total"] >= 3
	})
	c.Start("register")
	rc := Dial(t, c.RoomTCP[0])
	rc.Auth(c.Token("fan", "d", time.Hour))
	skipped := `pushgw_center_delivery_retries_skipped_total{reason="collapsed"}`
	deadline := time.Now().Add(20 * time.Second)
	// Read what arrives until the retrier has skipped both stale scores
	// (or pushed one: the failure).
	newest := false
	for ScrapeAdmin(t, admin)[skipped] < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the retrier did not skip the collapsed scores within 20 s")
		}
		p, err := rc.NextPush(100 * time.Millisecond)
		if err != nil {
			continue
		}
		if p.GetId() != ids[2] {
			t.Fatalf("got message %d %q: a collapsed score reached the client (want only %d)", p.GetId(), p.GetPayload(), ids[2])
		}
		newest = true
	}
	if !newest {
		if p, err := rc.NextPush(10 * time.Second); err != nil || p.GetId() != ids[2] {
			t.Fatalf("newest score not delivered: %v %v", p, err)
		}
	}
}

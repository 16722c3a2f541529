package test

import (
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
)

// A broadcast to an app with deliveries_per_second set goes out at that
// pace: 300 connections of one room at 150/s arrive over about 2 s, not
// in a burst; the API answers before the last delivery, and the status
// reports every connection reached.
func TestBroadcastPacing(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, Heartbeat: 30 * time.Second})
	const pace, total = 150, 300
	c.SetApp(func(a *appconfig.App) { a.DeliveriesPerSecond = pace })
	// The app's config reaches center through etcd; a multicast's answer
	// tells when it applied.
	Eventually(t, 10*time.Second, "center to apply deliveries_per_second", func() bool {
		_, out := c.API("POST", "/v1/push/multi", map[string]any{"users": []string{"probe"}, "payload": "p", "qos": 0})
		return out["deliveries_per_second"] == float64(pace)
	})
	var online []*receiver
	for i := 0; i < total; i++ {
		online = append(online, c.receive(t, 0, "bp-"+strconv.Itoa(i)))
	}
	// Every session finished its login catch-up, so the broadcast reaches
	// all of them live (a catching-up one would get it from its catch-up,
	// unpaced).
	Eventually(t, 30*time.Second, "every login catch-up to finish", func() bool {
		return c.RoomsValue(t, `pushgw_room_broadcast_catchups_total{result="ok"}`) >= total
	})
	start := time.Now()
	id, _, _ := c.broadcast(t, c.CenterURLs[0], map[string]any{"payload": "paced", "qos": 1, "ttl": 600})
	answered := time.Since(start)
	var times []time.Time
	Eventually(t, 60*time.Second, "every connection to get the broadcast", func() bool {
		times = times[:0]
		for _, r := range online {
			if at, ok := r.got()[id]; ok {
				times = append(times, at)
			}
		}
		return len(times) == total
	})
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	span := times[len(times)-1].Sub(times[0])
	// 300 at 150/s with a first chunk of 7: the last is due 1.95 s after
	// the room started, so at least that long after the request (however
	// slow the box); the spread itself is about 2 s. Unpaced, one room
	// gives 300 connections a broadcast in milliseconds.
	t.Logf("broadcast answered in %v; %d connections reached over %v", answered, total, span)
	if last := times[len(times)-1].Sub(start); last < 1950*time.Millisecond {
		t.Fatalf("last delivery %v after the request, want at least 1.95 s", last)
	}
	if span < time.Second || span > 20*time.Second {
		t.Fatalf("deliveries spread over %v, want about 2 s (1..20 s)", span)
	}
	if last := times[len(times)-1].Sub(start); answered >= last {
		t.Fatalf("the API answered after %v, after the last delivery (%v): it waited for the fan-out", answered, last)
	}
	Eventually(t, 20*time.Second, "status to report the room done with every connection reached", func() bool {
		st := c.broadcastStatus(t, id)
		return st["state"] == "done" && st["reached"] == float64(total)
	})
}

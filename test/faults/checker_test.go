package faults

import (
	"testing"
	"time"

	"github.com/pushgw/pushgw/test"
)

func TestCheckerClassifies(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newChecker()
	c.addWindow(window{Name: "kill room-1", Start: t0.Add(10 * time.Second), End: t0.Add(20 * time.Second)})
	send := func(key, user string, at time.Duration, acked bool, id uint64) {
		c.attempted(&attempt{key: key, user: user, sent: t0.Add(at)})
		errText := ""
		if !acked {
			errText = "timeout"
		}
		c.finished(key, acked, id, errText)
	}
	got := func(key, user string, id uint64, at time.Duration) {
		c.delivered(delivery{key: key, user: user, id: id, at: t0.Add(at)})
	}
	send("ok", "u1", 0, true, 1)
	got("ok", "u1", 1, 100*time.Millisecond)
	send("lost", "u1", 12*time.Second, true, 2) // inside the window
	send("failed", "u2", time.Second, false, 0)
	send("recovered", "u2", 15*time.Second, false, 0)
	got("recovered", "u2", 4, 16*time.Second)
	send("dup", "u3", 2*time.Second, true, 5)
	got("dup", "u3", 5, 3*time.Second)
	got("dup", "u3", 5, 4*time.Second)
	got("dup", "u3", 5, 5*time.Second) // a third copy is still one duplicated message
	got("ghost", "u1", 9, time.Second)
	send("wronguser", "u1", 0, true, 6)
	got("wronguser", "u2", 6, time.Second)
	send("wrongid", "u1", 0, true, 7)
	got("wrongid", "u1", 8, time.Second)

	r := c.result()
	want := Result{Attempted: 7, Acknowledged: 5, Failed: 2, Delivered: 8, Lost: 3, Unexpected: 3, Duplicated: 1, Recovered: 1}
	if r.Attempted != want.Attempted || r.Acknowledged != want.Acknowledged || r.Failed != want.Failed ||
		r.Delivered != want.Delivered || r.Unexpected != want.Unexpected ||
		r.Duplicated != want.Duplicated || r.Recovered != want.Recovered {
		t.Fatalf("result %+v\nwant counts %+v", r, want)
	}
	// "wronguser" and "wrongid" were delivered only wrongly, so they count
	// as lost as well as unexpected: the right user never got the right id.
	if r.Lost != 3 {
		t.Fatalf("lost = %d, want 3 (lost, wronguser, wrongid)", r.Lost)
	}
	if r.Passed() {
		t.Fatal("a result with losses passed")
	}
	var lostInWindow bool
	for _, p := range r.Problems {
		if p.Kind == "lost" && p.Key == "lost" && p.ID == 2 && p.Window == "kill room-1" {
			lostInWindow = true
		}
	}
	if !lostInWindow {
		t.Fatalf("lost message not blamed on its fault window: %+v", r.Problems)
	}
	for _, w := range r.Windows {
		if w.Name == "kill room-1" && (w.Attempted != 2 || w.Lost != 1 || w.Recovered != 1 || w.Seconds != 10) {
			t.Fatalf("window counts %+v", w)
		}
	}
	if r.LatencyMs["p50"] <= 0 || r.LatencyMs["max"] != 1000 {
		t.Fatalf("latency %v, want max 1000 ms (dup's first copy)", r.LatencyMs)
	}
	if m := c.missing(); len(m) != 3 {
		t.Fatalf("missing = %v", m)
	}
}

func TestCheckerCleanRunPasses(t *testing.T) {
	c := newChecker()
	now := time.Now()
	for i, k := range []string{"a", "b", "c"} {
		c.attempted(&attempt{key: k, user: "u", sent: now})
		c.finished(k, true, uint64(i+1), "")
		c.delivered(delivery{key: k, user: "u", id: uint64(i + 1), at: now.Add(time.Duration(i+1) * time.Millisecond)})
	}
	r := c.result()
	if !r.Passed() || r.Lost != 0 || r.Acknowledged != 3 || r.LatencyMs["p50"] != 2 {
		t.Fatalf("clean run: %+v", r)
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	if p := percentile(v, 0.5); p != 5 {
		t.Fatalf("p50 = %v", p)
	}
	if p := percentile(v, 0.99); p != 10 {
		t.Fatalf("p99 = %v", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Fatalf("empty = %v", p)
	}
}

func TestCheckerAwayWindowOutOfLatency(t *testing.T) {
	t0 := time.Now()
	c := newChecker()
	c.addWindow(window{Name: "away", Start: t0.Add(time.Second), End: t0.Add(2 * time.Second), Away: true})
	c.attempted(&attempt{key: "live", user: "u", sent: t0})
	c.finished("live", true, 1, "")
	c.delivered(delivery{key: "live", user: "u", id: 1, at: t0.Add(5 * time.Millisecond)})
	c.attempted(&attempt{key: "waited", user: "u", sent: t0.Add(1500 * time.Millisecond)})
	c.finished("waited", true, 2, "")
	c.delivered(delivery{key: "waited", user: "u", id: 2, at: t0.Add(60 * time.Second)})
	r := c.result()
	if r.LatencyMs["max"] != 5 || !r.Passed() {
		t.Fatalf("latency %v: the away window's message counted", r.LatencyMs)
	}
	if w := r.Windows[1]; w.Name != "away" || w.P99Ms < 58000 {
		t.Fatalf("away window %+v: its own p99 should show the wait", w)
	}
}

// A window in which no room served (both rooms down at once) keeps its own
// figures but stays out of the run's latency_ms; latency_ms_with_no_room
// counts it.
func TestCheckerNoRoomWindowOutOfLatency(t *testing.T) {
	t0 := time.Now()
	c := newChecker()
	c.addWindow(window{Name: "both rooms down", Start: t0.Add(time.Second), End: t0.Add(2 * time.Second), NoRoom: true})
	c.attempted(&attempt{key: "live", user: "u", sent: t0})
	c.finished("live", true, 1, "")
	c.delivered(delivery{key: "live", user: "u", id: 1, at: t0.Add(5 * time.Millisecond)})
	c.attempted(&attempt{key: "waited", user: "u", sent: t0.Add(1500 * time.Millisecond)})
	c.finished("waited", true, 2, "")
	c.delivered(delivery{key: "waited", user: "u", id: 2, at: t0.Add(1500*time.Millisecond + 6*time.Second)})
	r := c.result()
	if r.LatencyMs["max"] != 5 || !r.Passed() {
		t.Fatalf("latency %v: the no-room window's message counted", r.LatencyMs)
	}
	if r.LatencyWithNoRoomMs["max"] != 6000 {
		t.Fatalf("latency_ms_with_no_room %v: want the no-room message's 6 s in it", r.LatencyWithNoRoomMs)
	}
	if w := r.Windows[1]; w.Name != "both rooms down" || !w.NoRoom || w.OverTarget != 1 || w.P99Ms != 6000 {
		t.Fatalf("no-room window %+v: its own figures should show the wait", w)
	}
}

// Two room faults paired leave no room; a room fault with another does not.
func TestPairNoRoom(t *testing.T) {
	if p := pair(killRestart(test.RoomName(0), time.Second), hang(test.RoomName(1), time.Second)); !p.noRoom {
		t.Fatalf("%s: want no_room", p.name)
	}
	if p := pair(killRestart(test.RoomName(0), time.Second), killRestart("register", time.Second)); p.noRoom {
		t.Fatalf("%s: one room still serves", p.name)
	}
}

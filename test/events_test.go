package test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/webhooksig"
)

// hookEvent is what the test reads of a posted event.
type hookEvent struct {
	EventID   string `json:"event_id"`
	Type      string `json:"type"`
	User      string `json:"user"`
	Device    string `json:"device"`
	RoomID    string `json:"room_id"`
	Reason    string `json:"reason"`
	MessageID string `json:"message_id"`
	Outcome   string `json:"outcome"`
}

func seqOf(t *testing.T, id string) uint64 {
	n, err := strconv.ParseUint(strings.TrimPrefix(id, "ev-"), 10, 64)
	if err != nil {
		t.Fatalf("event id %q", id)
	}
	return n
}

// Event back-off of the outage test, scaled down from production's 1 s
// and 30 s (docs/OPERATIONS.md: "down for a minute loses nothing"). The
// webhook stays down until one event has been refused
// webhookCappedRefusals times: with base 250 ms doubling to the 3 s cap,
// failures 1–4 wait 0.25–2 s and the 5th and 6th wait the capped 3 s (with
// jitter), so the 7th refusal proves the back-off rose to its cap and
// stayed there, as production's minute outage is two of its caps.
const (
	webhookRetryBase      = 250 * time.Millisecond
	webhookRetryMax       = 3 * time.Second
	webhookCappedRefusals = 7
)

// A webhook down for several capped back-offs (a minute in production's
// timers), then back, gets every online/offline callback and receipt, each
// accepted once (by event id), in order per user: the events waited in
// saver's MySQL outbox, and the coordinator retried with back-off. Two
// rooms; reasons closed, timed_out, kicked, replaced; receipts acked and
// expired.
func TestCallbacksAndReceiptsSurviveWebhookOutage(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, SweepEvery: time.Second, ExtraCoordinatorArg: []string{
		"-event-retry-base", webhookRetryBase.String(), "-event-retry-max", webhookRetryMax.String()}})
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	accepted := map[string]int{}       // by event id
	byUser := map[string][]hookEvent{} // accepted, in arrival order
	var badSig, refused atomic.Int64
	refusedBy, mostRefused := map[string]int{}, 0 // refusals by event id, under mu
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhooksig.Verify(c.Secret, r.Header.Get(webhooksig.HeaderTimestamp), r.Header.Get(webhooksig.HeaderSignature),
			body, time.Now(), webhooksig.DefaultReplayWindow); err != nil {
			badSig.Add(1)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if down.Load() {
			refused.Add(1)
			var in struct {
				Events []hookEvent `json:"events"`
			}
			if json.Unmarshal(body, &in) == nil {
				mu.Lock()
				for _, e := range in.Events {
					refusedBy[e.EventID]++
					mostRefused = max(mostRefused, refusedBy[e.EventID])
				}
				mu.Unlock()
			}
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		var in struct {
			Events []hookEvent `json:"events"`
		}
		if err := json.Unmarshal(body, &in); err != nil || len(in.Events) == 0 {
			http.Error(w, "want {events:[…]}", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, e := range in.Events {
			accepted[e.EventID]++
			if accepted[e.EventID] == 1 {
				byUser[e.User] = append(byUser[e.User], e)
			}
		}
		mu.Unlock()
	}))
	defer hook.Close()

	putApp(t, c, appconfig.App{Name: c.App, Secret: c.Secret, APIKey: c.APIKey, WebhookURL: hook.URL,
		Callbacks: appconfig.Callbacks{Events: "receipts,online,offline", WebhookBatch: 5}})
	// Center takes receipt pushes once it has the subscription; the rooms
	// and the coordinator watch the same key.
	var expiredID uint64
	Eventually(t, 20*time.Second, "center accepts a receipt push", func() bool {
		code, out := c.API("POST", "/v1/push", map[string]any{"user": "ev-x", "payload": "expires", "ttl": 1, "receipt": true})
		if code != 200 {
			return false
		}
		expiredID, _ = strconv.ParseUint(out["id"].(string), 10, 64)
		return true
	})

	// closed, on room 1.
	a := Dial(t, c.RoomTCP[0])
	a.Auth(c.Token("ev-a", "d1", time.Hour))
	a.Conn.Close()
	// replaced, on room 2: the same device logs in twice.
	a1 := Dial(t, c.RoomTCP[1])
	a1.Auth(c.Token("ev-a", "d1", time.Hour))
	a2 := Dial(t, c.RoomTCP[1])
	a2.Auth(c.Token("ev-a", "d1", time.Hour))
	a1.ExpectClosed()
	a2.Conn.Close() // before its heartbeat deadline: "closed", not "timed_out"
	// timed_out: authenticated, then silent.
	b := Dial(t, c.RoomTCP[0])
	b.Auth(c.Token("ev-b", "d1", time.Hour))
	// kicked, on room 2.
	k := Dial(t, c.RoomTCP[1])
	k.Auth(c.Token("ev-c", "d1", time.Hour))
	Eventually(t, 20*time.Second, "kick", func() bool {
		code, _ := c.API("POST", "/v1/kick", map[string]any{"user": "ev-c"})
		return code == 200
	})
	k.ExpectClosed()
	b.ExpectClosed()
	// acked: an SDK client takes a receipt push.
	r := startSDK(t, c, "ev-r", "phone")
	var ackedID uint64
	Eventually(t, 20*time.Second, "receipt push acked", func() bool {
		if ackedID == 0 {
			code, out := c.API("POST", "/v1/push", map[string]any{"user": "ev-r", "payload": "hi", "receipt": true})
			if code != 200 {
				return false
			}
			ackedID, _ = strconv.ParseUint(out["id"].(string), 10, 64)
		}
		return r.Count(ackedID) > 0 && c.Status(ackedID) == "acked"
	})
	Eventually(t, 30*time.Second, "unacked push expired", func() bool { return c.Status(expiredID) == "expired" })

	// The webhook stays down; the events wait in MySQL.
	Eventually(t, 30*time.Second, "coordinator tried the webhook", func() bool { return refused.Load() > 0 })
	Eventually(t, 60*time.Second, "an event retried at the capped back-off", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return mostRefused >= webhookCappedRefusals
	})
	mu.Lock()
	if len(accepted) != 0 {
		t.Fatalf("events accepted while the webhook was down: %v", accepted)
	}
	mu.Unlock()
	down.Store(false)

	want := map[string][]string{
		"ev-a": {"online", "offline:closed", "online", "online", "offline:replaced", "offline:closed"},
		"ev-b": {"online", "offline:timed_out"},
		"ev-c": {"online", "offline:kicked"},
		"ev-r": {"online", "receipt:acked"},
		"ev-x": {"receipt:expired"},
	}
	got := func() map[string][]string {
		mu.Lock()
		defer mu.Unlock()
		out := map[string][]string{}
		for u, evs := range byUser {
			for _, e := range evs {
				s := e.Type
				switch {
				case e.Reason != "":
					s += ":" + e.Reason
				case e.Outcome != "":
					s += ":" + e.Outcome
				}
				out[u] = append(out[u], s)
			}
		}
		return out
	}
	Eventually(t, 90*time.Second, "every callback and receipt delivered after the outage", func() bool {
		g := got()
		for u, w := range want {
			if len(g[u]) < len(w) {
				return false
			}
		}
		return true
	})
	g := got()
	for u, w := range want {
		// ev-a's events come from two rooms, whose order between them is
		// the order they reached the outbox; compare as multisets (order
		// by event id is checked below).
		if strings.Join(sortedCopy(g[u][:len(w)]), ",") != strings.Join(sortedCopy(w), ",") {
			t.Errorf("%s: events %v, want %v", u, g[u], w)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range accepted {
		if n != 1 {
			t.Errorf("event %s accepted %d times", id, n)
		}
	}
	for u, evs := range byUser {
		for i := 1; i < len(evs); i++ {
			if seqOf(t, evs[i].EventID) <= seqOf(t, evs[i-1].EventID) {
				t.Errorf("%s: event %s arrived after %s", u, evs[i].EventID, evs[i-1].EventID)
			}
		}
		for _, e := range evs {
			if e.Type == "receipt" && e.MessageID != strconv.FormatUint(map[string]uint64{"ev-r": ackedID, "ev-x": expiredID}[u], 10) {
				t.Errorf("%s: receipt for message %s", u, e.MessageID)
			}
			if e.Type != "receipt" && (e.Device != "d1" && e.Device != "phone" || e.RoomID == "") {
				t.Errorf("%s: callback without device or room: %+v", u, e)
			}
		}
	}
	if badSig.Load() != 0 {
		t.Errorf("%d webhook requests failed the signature check", badSig.Load())
	}
	m := ScrapeAdmin(t, c.Procs["coordinator"].Admin)
	if m[`pushgw_coordinator_events_total{result="retried"}`] == 0 || m[`pushgw_coordinator_events_total{result="delivered"}`] == 0 {
		t.Errorf("coordinator event metrics: retried %v delivered %v", m[`pushgw_coordinator_events_total{result="retried"}`], m[`pushgw_coordinator_events_total{result="delivered"}`])
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

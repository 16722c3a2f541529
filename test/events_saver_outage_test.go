package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
)

// Saver killed (SIGKILL) while clients log in and out: the rooms hold the
// online/offline events saver cannot take and retry them with back-off, so
// once saver is back every event reaches the webhook once, in order per
// user (services/room/events.go, eventHold).
func TestCallbacksSurviveSaverRestart(t *testing.T) {
	c := StartCluster(t, Options{})
	var mu sync.Mutex
	accepted := map[string]int{}       // by event id
	byUser := map[string][]hookEvent{} // accepted, in arrival order
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var in struct {
			Events []hookEvent `json:"events"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
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
		Callbacks: appconfig.Callbacks{Events: "online,offline", WebhookBatch: 5}})
	events := func(user string) []hookEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]hookEvent(nil), byUser[user]...)
	}
	// The room watches the subscription: a probe login's callback says it
	// (and the whole path to the webhook) is in place.
	Eventually(t, 30*time.Second, "a probe login's online callback", func() bool {
		p := Dial(t, c.RoomTCP[0])
		p.Auth(c.Token("sv-probe", "d", time.Hour))
		p.Conn.Close()
		return len(events("sv-probe")) > 0
	})

	c.Kill("saver")
	const users, heldTries = 8, 10
	for round := 0; round < 2; round++ {
		for u := 0; u < users; u++ {
			cl := Dial(t, c.RoomTCP[0])
			cl.Auth(c.Token(fmt.Sprintf("sv-%d", u), fmt.Sprintf("dev-%d", round), time.Hour))
			cl.Conn.Close()
		}
	}
	// The rooms have met saver's absence more often than a fixed retry
	// budget would allow (the old reporter gave up after 8 tries): the
	// events are held, not lost.
	Eventually(t, 40*time.Second, "the rooms' RecordEvents refused again and again", func() bool {
		return c.RoomsValue(t, `pushgw_room_peer_errors_total{method="SaverEvents.RecordEvents"}`) >= heldTries
	})
	c.Start("saver")

	const perUser = 4 // two logins, each online then offline
	Eventually(t, 60*time.Second, "every online/offline event at the webhook after saver's restart", func() bool {
		for u := 0; u < users; u++ {
			if len(events(fmt.Sprintf("sv-%d", u))) < perUser {
				return false
			}
		}
		return true
	})
	for u := 0; u < users; u++ {
		user := fmt.Sprintf("sv-%d", u)
		evs := events(user)
		kinds := map[string]int{}
		for i, e := range evs {
			kinds[e.Type]++
			if i > 0 && seqOf(t, e.EventID) <= seqOf(t, evs[i-1].EventID) {
				t.Errorf("%s: event %s arrived after %s", user, e.EventID, evs[i-1].EventID)
			}
		}
		if len(evs) != perUser || kinds["online"] != 2 || kinds["offline"] != 2 || evs[0].Type != "online" {
			t.Errorf("%s: events %+v, want online, offline twice, online first", user, evs)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range accepted {
		if n != 1 {
			t.Errorf("event %s accepted %d times", id, n)
		}
	}
	if lost := c.RoomsValue(t, `pushgw_room_batch_failed_total{batch="events"}`); lost != 0 {
		t.Errorf("%v event batches lost", lost)
	}
}

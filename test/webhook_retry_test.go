package test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/webhooksig"
)

// An uplink whose webhook answers 500 twice then 200: the coordinator
// retries inside the room's deadline, the business acts on it once (one
// event id across the three signed POSTs), and the reply reaches the SDK
// client through the room.
func TestUplinkWebhookRetriedThroughRoom(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, Heartbeat: 2 * time.Second})

	type post struct {
		eventID string
		sigErr  error
	}
	var mu sync.Mutex
	posts := map[string][]post{}  // by route
	processed := map[string]int{} // by event id
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var in struct {
			EventID string `json:"event_id"`
			Route   string `json:"route"`
		}
		_ = json.Unmarshal(body, &in)
		err := webhooksig.Verify(c.Secret, r.Header.Get(webhooksig.HeaderTimestamp), r.Header.Get(webhooksig.HeaderSignature),
			body, time.Now(), webhooksig.DefaultReplayWindow)
		mu.Lock()
		posts[in.Route] = append(posts[in.Route], post{in.EventID, err})
		n := len(posts[in.Route])
		fail := err != nil || (in.Route == "flaky" && n <= 2)
		if !fail {
			processed[in.EventID]++
		}
		mu.Unlock()
		if fail {
			http.Error(w, "having a bad day", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"payload_base64": base64.StdEncoding.EncodeToString([]byte("pong:" + in.Route))})
	}))
	defer hook.Close()
	setWebhook(t, c, hook.URL)

	cl := startSDK(t, c, "flaky-talker", "phone")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The coordinator applies the webhook a moment after etcd has it.
	Eventually(t, 10*time.Second, "uplink answered", func() bool {
		_, err := cl.Uplink(ctx, "warmup", nil)
		return err == nil
	})
	admin := c.Procs["coordinator"].Admin
	retryableBefore := ScrapeAdmin(t, admin)[`pushgw_coordinator_webhook_attempts_total{result="retryable"}`]

	reply, err := cl.Uplink(ctx, "flaky", []byte("hello"))
	if err != nil || string(reply) != "pong:flaky" {
		t.Fatalf("uplink to a webhook failing twice: %q, %v; want the reply of the third POST", reply, err)
	}
	mu.Lock()
	got := append([]post(nil), posts["flaky"]...)
	mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("webhook saw %d POSTs for the uplink, want 3 (500, 500, 200)", len(got))
	}
	for i, p := range got {
		if p.sigErr != nil || p.eventID == "" || p.eventID != got[0].eventID {
			t.Fatalf("POST %d: event %q (first %q), signature: %v", i, p.eventID, got[0].eventID, p.sigErr)
		}
	}
	mu.Lock()
	once := processed[got[0].eventID]
	mu.Unlock()
	if once != 1 {
		t.Fatalf("event %s processed %d times, want once", got[0].eventID, once)
	}
	if d := AdminValue(t, admin, `pushgw_coordinator_webhook_attempts_total{result="retryable"}`) - retryableBefore; d != 2 {
		t.Fatalf("coordinator counted %v retryable attempts for the uplink, want 2", d)
	}
}

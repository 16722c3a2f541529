package test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/webhooksig"
)

// receiptEvent is what this test reads of a posted receipt.
type receiptEvent struct {
	EventID       string `json:"event_id"`
	Type          string `json:"type"`
	User          string `json:"user"`
	MessageID     string `json:"message_id"`
	Outcome       string `json:"outcome"`
	DeliveryCount int    `json:"delivery_count"`
}

// receiptMultiTTL is the multicast's ttl: long enough for the two online
// SDK clients to take and ack it on a loaded box, short enough that the
// third user's copy expires within the test.
const receiptMultiTTL = 5

// A multicast with "receipt": true to three users gets one signed receipt
// per recipient at the webhook, each naming that user's message id: two
// users online with an SDK ack theirs ("acked"); the third never connects
// before the ttl runs out ("expired", delivery_count 0). A broadcast
// refuses receipt with a 400 (stored once, not per user).
func TestReceiptsMulticast(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, SweepEvery: time.Second})
	var mu sync.Mutex
	posts := map[string]int{} // by event id
	var got []receiptEvent    // first arrival of each event
	var badSig atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhooksig.Verify(c.Secret, r.Header.Get(webhooksig.HeaderTimestamp), r.Header.Get(webhooksig.HeaderSignature),
			body, time.Now(), webhooksig.DefaultReplayWindow); err != nil {
			badSig.Add(1)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Without --webhook-batch each POST is one event object.
		var e receiptEvent
		if err := json.Unmarshal(body, &e); err != nil || e.EventID == "" {
			http.Error(w, "want one event object", http.StatusBadRequest)
			return
		}
		mu.Lock()
		posts[e.EventID]++
		if posts[e.EventID] == 1 {
			got = append(got, e)
		}
		mu.Unlock()
	}))
	defer hook.Close()

	putApp(t, c, appconfig.App{Name: c.App, Secret: c.Secret, APIKey: c.APIKey, WebhookURL: hook.URL,
		Callbacks: appconfig.Callbacks{Events: "receipts"}})

	a := startSDK(t, c, "rc-a", "phone")
	b := startSDK(t, c, "rc-b", "phone")
	Eventually(t, 20*time.Second, "both SDK clients connected", func() bool { return a.Endpoint() != "" && b.Endpoint() != "" })

	// Center takes the receipt multicast once it sees the subscription.
	ids := map[string]string{}
	Eventually(t, 20*time.Second, "center accepts a receipt multicast", func() bool {
		code, out := c.API("POST", "/v1/push/multi", map[string]any{"users": []string{"rc-a", "rc-b", "rc-x"},
			"payload": "fate", "ttl": receiptMultiTTL, "receipt": true})
		if code != 200 {
			return false
		}
		for u, id := range out["ids"].(map[string]any) {
			ids[u] = id.(string)
		}
		return true
	})
	if len(ids) != 3 {
		t.Fatalf("multicast ids %v, want three users", ids)
	}

	want := map[string]string{"rc-a": "acked", "rc-b": "acked", "rc-x": "expired"}
	Eventually(t, 60*time.Second, "a receipt per recipient", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(want)
	})

	// A broadcast has no per-user fate: refused, with the reason.
	code, out := c.API("POST", "/v1/broadcast", map[string]any{"payload": "all", "receipt": true})
	if code != 400 || out["field"] != "receipt" {
		t.Errorf("broadcast with receipt: %d %v; want 400 on field receipt", code, out)
	}

	mu.Lock()
	defer mu.Unlock()
	byUser := map[string]receiptEvent{}
	for _, e := range got {
		if e.Type != "receipt" {
			t.Errorf("event of type %q; only receipts are subscribed", e.Type)
			continue
		}
		if _, dup := byUser[e.User]; dup {
			t.Errorf("%s: two receipts (%v and %v)", e.User, byUser[e.User], e)
		}
		byUser[e.User] = e
	}
	for u, outcome := range want {
		e, ok := byUser[u]
		switch {
		case !ok:
			t.Errorf("%s: no receipt (got %v)", u, got)
		case e.Outcome != outcome:
			t.Errorf("%s: outcome %q, want %q", u, e.Outcome, outcome)
		case e.MessageID != ids[u]:
			t.Errorf("%s: receipt for message %s, want %s", u, e.MessageID, ids[u])
		case u == "rc-x" && e.DeliveryCount != 0:
			t.Errorf("rc-x never connected, yet delivery_count %d", e.DeliveryCount)
		}
	}
	for id, n := range posts {
		if n != 1 {
			t.Errorf("event %s posted %d times to a webhook that always answered 200", id, n)
		}
	}
	if badSig.Load() != 0 {
		t.Errorf("%d webhook requests failed the signature check", badSig.Load())
	}
}

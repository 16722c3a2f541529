package test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCenterAPIErrors(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1})
	push := map[string]any{"app": c.App, "user": "u", "payload": "x", "qos": 1, "ttl": 60}

	cases := []struct {
		name   string
		key    string
		body   any
		status int
		code   string
	}{
		{"no key", "", push, http.StatusUnauthorized, "UNAUTHENTICATED"},
		{"wrong key", "definitely-not-a-key-000000", push, http.StatusUnauthorized, "UNAUTHENTICATED"},
		{"another app's key", c.OtherApp.APIKey, push, http.StatusForbidden, "FORBIDDEN"},
		{"unknown app", c.APIKey, map[string]any{"app": "no-such-app", "user": "u", "payload": "x"}, http.StatusForbidden, "FORBIDDEN"},
		{"bad JSON", c.APIKey, "{not json", http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"unknown field", c.APIKey, map[string]any{"app": c.App, "user": "u", "payload": "x", "colour": "red"}, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"missing user", c.APIKey, map[string]any{"app": c.App, "payload": "x"}, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"bad qos", c.APIKey, map[string]any{"app": c.App, "user": "u", "payload": "x", "qos": 7}, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"negative ttl", c.APIKey, map[string]any{"app": c.App, "user": "u", "payload": "x", "qos": 1, "ttl": -5}, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"payload too large", c.APIKey, map[string]any{"app": c.App, "user": "u", "payload": strings.Repeat("x", 70<<10), "qos": 1}, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, out := c.APIWithKey(tc.key, "POST", "/v1/push", tc.body)
			if status != tc.status || out["code"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.code)
			}
			if msg, _ := out["message"].(string); msg == "" {
				t.Fatalf("error without a message: %v", out)
			}
		})
	}

	t.Run("too many users in multi", func(t *testing.T) {
		users := make([]string, 100_001)
		for i := range users {
			users[i] = "u" + strconv.Itoa(i)
		}
		status, out := c.API("POST", "/v1/push/multi", map[string]any{"app": c.App, "users": users, "payload": "x", "qos": 1})
		if status != http.StatusBadRequest || out["code"] != "INVALID_ARGUMENT" {
			t.Fatalf("got %d %v", status, out)
		}
	})

	t.Run("wrong content type", func(t *testing.T) {
		req, _ := http.NewRequest("POST", c.CenterURL+"/v1/push", strings.NewReader(`{"app":"x"}`))
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
		req.Header.Set("Content-Type", "text/plain")
		status, out := doJSON(t, req)
		if status != http.StatusUnsupportedMediaType {
			t.Fatalf("got %d %v", status, out)
		}
	})

	t.Run("unknown message id", func(t *testing.T) {
		status, out := c.API("GET", "/v1/messages/12345", nil)
		if status != http.StatusNotFound || out["code"] != "NOT_FOUND" {
			t.Fatalf("got %d %v", status, out)
		}
	})

	t.Run("another app cannot see a message", func(t *testing.T) {
		id := c.Push("u-private", 1, 60e9, "secret stuff")
		status, _ := c.APIWithKey(c.OtherApp.APIKey, "GET", "/v1/messages/"+strconv.FormatUint(id, 10), nil)
		if status != http.StatusNotFound {
			t.Fatalf("other app got status %d for message %d", status, id)
		}
	})
}

// A business that retries a push with the same idempotency_key gets the
// first id back and the user gets the message once; the key is per app.
func TestIdempotentPush(t *testing.T) {
	c := StartCluster(t, Options{})
	cl := startSDK(t, c, "idem", "phone")
	Eventually(t, 10*time.Second, "client connected", func() bool { return cl.Endpoint() != "" })
	body := map[string]any{"app": c.App, "user": "idem", "payload": "once", "qos": 1, "idempotency_key": "evt-1"}
	status, first := c.API("POST", "/v1/push", body)
	if status != http.StatusOK || first["replayed"] != nil {
		t.Fatalf("first push: %d %v", status, first)
	}
	for i := 0; i < 3; i++ {
		status, again := c.API("POST", "/v1/push", body)
		if status != http.StatusOK || again["id"] != first["id"] || again["replayed"] != true {
			t.Fatalf("retry %d: %d %v, want id %v replayed", i, status, again, first["id"])
		}
	}
	id, _ := strconv.ParseUint(first["id"].(string), 10, 64)
	Eventually(t, 10*time.Second, "the message handled", func() bool { return cl.Count(id) == 1 })
	time.Sleep(2 * time.Second) // room for a wrongly sent second copy to arrive
	cl.mu.Lock()
	handled := len(cl.order)
	cl.mu.Unlock()
	if handled != 1 {
		t.Fatalf("%d messages handled, want 1", handled)
	}

	// The same key in another app is another message.
	other := map[string]any{"app": c.OtherApp.Name, "user": "idem", "payload": "once", "qos": 1, "idempotency_key": "evt-1"}
	if status, out := c.APIWithKey(c.OtherApp.APIKey, "POST", "/v1/push", other); status != http.StatusOK || out["id"] == first["id"] || out["replayed"] != nil {
		t.Fatalf("other app, same key: %d %v", status, out)
	}
	// A key on a QoS 0 push, or a key too long, is refused.
	for _, bad := range []map[string]any{
		{"app": c.App, "user": "idem", "payload": "x", "qos": 0, "idempotency_key": "k"},
		{"app": c.App, "user": "idem", "payload": "x", "qos": 1, "idempotency_key": strings.Repeat("k", 129)},
	} {
		if status, out := c.API("POST", "/v1/push", bad); status != http.StatusBadRequest || out["field"] != "idempotency_key" {
			t.Fatalf("bad key: %d %v", status, out)
		}
	}
}

// A retry whose key names a message stored but never delivered (the
// center that stored it could not, or died) delivers that message at once
// instead of leaving it to the sweep, which is off here.
func TestIdempotentRetryDeliversStoredMessage(t *testing.T) {
	c := StartCluster(t, Options{ExtraCenterArg: noSweep})
	cl := startSDK(t, c, "replay", "phone")
	Eventually(t, 10*time.Second, "client connected", func() bool { return cl.Endpoint() != "" })
	body := map[string]any{"app": c.App, "user": "replay", "payload": "late", "qos": 1, "idempotency_key": "evt-9"}
	c.Kill("register")
	status, first := c.API("POST", "/v1/push", body)
	if status != http.StatusOK {
		t.Fatalf("push with register down: %d %v", status, first)
	}
	// Center's live delivery and its retries (0.5, 2, 5 s) have all failed
	// and the retrier gave the message up: only the idempotent retry below
	// can deliver it now (the sweep is off).
	Eventually(t, 30*time.Second, "center's delivery retries given up", func() bool {
		return ScrapeAdmin(t, c.Procs["center"].Admin)[`pushgw_center_delivery_retries_dropped_total{reason="gave_up"}`] >= 1
	})
	c.Start("register")
	id, _ := strconv.ParseUint(first["id"].(string), 10, 64)
	if cl.Count(id) != 0 {
		t.Fatal("delivered while register was down")
	}
	status, again := c.API("POST", "/v1/push", body)
	if status != http.StatusOK || again["id"] != first["id"] || again["replayed"] != true {
		t.Fatalf("retry: %d %v", status, again)
	}
	Eventually(t, 10*time.Second, "the stored message delivered by the retry", func() bool { return cl.Count(id) == 1 })
}

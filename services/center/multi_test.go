package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
)

func TestCollapseAndPriorityValidation(t *testing.T) {
	e := newTestEnv(t)
	for _, c := range []struct{ body, field string }{
		{`{"user":"u","payload":"x","collapse_key":"` + strings.Repeat("k", maxCollapseKeyBytes+1) + `"}`, "collapse_key"},
		{`{"user":"u","payload":"x","collapse_key":"a\u0007b"}`, "collapse_key"},
		{`{"user":"u","payload":"x","qos":0,"collapse_key":"k"}`, "collapse_key"},
		{`{"user":"u","payload":"x","priority":"urgent"}`, "priority"},
		{`{"user":"u","payload":"x","qos":0,"priority":"high"}`, "priority"},
		{`{"user":"u","payload":"x","priority":1}`, "priority"},
	} {
		r := e.postJSON("/v1/push", c.body)
		expectError(t, r, 400, CodeInvalidArgument)
		if r.body["field"] != c.field {
			t.Errorf("%s: field %v, want %s", c.body, r.body["field"], c.field)
		}
		m := strings.Replace(c.body, `"user":"u"`, `"users":["u"]`, 1)
		if r := e.postJSON("/v1/push/multi", m); r.status != 400 || r.body["field"] != c.field {
			t.Errorf("multi %s: %d %v, want 400 on %s", m, r.status, r.body, c.field)
		}
	}
	expectError(t, e.postJSON("/v1/push/multi", `{"users":["u"],"payload":"x","qos":0,"idempotency_key":"k"}`), 400, CodeInvalidArgument)
	expectError(t, e.postJSON("/v1/push/multi", `{"users":["u"],"payload":"x","idempotency_key":"`+strings.Repeat("k", 129)+`"}`), 400, CodeInvalidArgument)
}

// users x payload over 64 MiB is refused with 413 before anything is
// stored, however small the body.
func TestMulticastBytesCap(t *testing.T) {
	e := newTestEnv(t)
	users := make([]string, 100_000)
	for i := range users {
		users[i] = fmt.Sprintf(`"u%d"`, i)
	}
	payload := strings.Repeat("p", maxMultiBytes/len(users)+1)
	r := e.postJSON("/v1/push/multi", `{"users":[`+strings.Join(users, ",")+`],"payload":"`+payload+`"}`)
	expectError(t, r, 413, CodePayloadTooLarge)
	if msg := r.body["message"].(string); !strings.Contains(msg, "split") {
		t.Fatalf("message %q does not say what to do", msg)
	}
}

// An app over its push limit gets 429 RATE_LIMITED with Retry-After, from
// the limit set live in etcd.
func TestPushRateLimited(t *testing.T) {
	e := newTestEnv(t)
	e.srv.useRedis(testRedis(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := appconfig.Update(ctx, e.cli, e.cluster, "app1", func(a *appconfig.App) error { a.PushRate = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the limit to apply", func() bool { a, _ := e.srv.apps.Get("app1"); return a.PushRate == 1 })
	var last *http.Response
	for range 3 {
		req, _ := http.NewRequest("POST", e.http.URL+"/v1/push", strings.NewReader(`{"user":"u","payload":"x","qos":0}`))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		last = resp
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") != "1" {
		t.Fatalf("third push at 1/s: %d Retry-After %q, want 429 and 1", last.StatusCode, last.Header.Get("Retry-After"))
	}
	// Another app is not limited by app1's bucket.
	if r := e.do("POST", "/v1/push", otherTestKey, "application/json", []byte(`{"user":"u","payload":"x","qos":0}`)); r.status == 429 {
		t.Fatal("app2 limited by app1's limit")
	}
}

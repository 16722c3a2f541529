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

func TestAuth(t *testing.T) {
	e := newTestEnv(t)
	body := []byte(`{"app":"app1","user":"u","payload":"x","qos":0}`)
	expectError(t, e.do(http.MethodPost, "/v1/push", "", "application/json", body), 401, CodeUnauthenticated)
	expectError(t, e.do(http.MethodPost, "/v1/push", "no-such-key-000000000", "application/json", body), 401, CodeUnauthenticated)
	// The key of app2 may not push as app1.
	expectError(t, e.do(http.MethodPost, "/v1/push", otherTestKey, "application/json", body), 403, CodeForbidden)
	expectError(t, e.do(http.MethodGet, "/v1/apps/app2/users/u/sessions", testKey, "", nil), 403, CodeForbidden)
	expectError(t, e.postJSON("/v1/kick", `{"app":"app2","user":"u"}`), 403, CodeForbidden)
	expectError(t, e.postJSON("/v1/push/multi", `{"app":"app2","users":["u"],"payload":"x"}`), 403, CodeForbidden)
	// Auth comes before the body is looked at.
	expectError(t, e.do(http.MethodPost, "/v1/push", "", "text/plain", []byte("junk")), 401, CodeUnauthenticated)
}

// A user taken from the URL path gets the UTF-8 check bodies get.
func TestSessionsPathUserUTF8(t *testing.T) {
	e := newTestEnv(t)
	expectError(t, e.do(http.MethodGet, "/v1/apps/app1/users/%ff%fe/sessions", testKey, "", nil), 400, CodeInvalidArgument)
}

func TestBodyRules(t *testing.T) {
	e := newTestEnv(t)
	cases := []struct {
		name, ct, body string
		status         int
		code           string
		field          string
	}{
		{"wrong content type", "text/plain", `{"user":"u","payload":"x"}`, 415, CodeUnsupportedMediaType, ""},
		{"no content type", "", `{"user":"u","payload":"x"}`, 415, CodeUnsupportedMediaType, ""},
		{"malformed", "application/json", `{"user":`, 400, CodeInvalidArgument, ""},
		{"empty", "application/json", ``, 400, CodeInvalidArgument, ""},
		{"not an object", "application/json", `[1,2]`, 400, CodeInvalidArgument, ""},
		{"unknown field", "application/json", `{"user":"u","payload":"x","colour":"red"}`, 400, CodeInvalidArgument, "colour"},
		{"wrong type", "application/json", `{"user":"u","payload":"x","qos":"1"}`, 400, CodeInvalidArgument, "qos"},
		{"two values", "application/json", `{"user":"u","payload":"x"} {"user":"v"}`, 400, CodeInvalidArgument, ""},
		{"invalid utf-8", "application/json; charset=utf-8", "{\"user\":\"u\xff\",\"payload\":\"x\"}", 400, CodeInvalidArgument, ""},
		{"no user", "application/json", `{"payload":"x"}`, 400, CodeInvalidArgument, "user"},
		{"long user", "application/json", `{"user":"` + strings.Repeat("u", maxUserBytes+1) + `","payload":"x"}`, 400, CodeInvalidArgument, "user"},
		{"long device", "application/json", `{"user":"u","device":"` + strings.Repeat("d", maxDeviceBytes+1) + `","payload":"x"}`, 400, CodeInvalidArgument, "device"},
		{"no payload", "application/json", `{"user":"u"}`, 400, CodeInvalidArgument, "payload"},
		{"both payloads", "application/json", `{"user":"u","payload":"x","payload_base64":"eA=="}`, 400, CodeInvalidArgument, "payload_base64"},
		{"bad base64", "application/json", `{"user":"u","payload_base64":"***"}`, 400, CodeInvalidArgument, "payload_base64"},
		{"qos 2", "application/json", `{"user":"u","payload":"x","qos":2}`, 400, CodeInvalidArgument, "qos"},
		{"negative ttl", "application/json", `{"user":"u","payload":"x","qos":1,"ttl":-1}`, 400, CodeInvalidArgument, "ttl"},
		{"ttl over 7 days", "application/json", `{"user":"u","payload":"x","qos":1,"ttl":604801}`, 400, CodeInvalidArgument, "ttl"},
		{"payload too large", "application/json", `{"user":"u","payload":"` + strings.Repeat("p", maxPayloadBytes+1) + `"}`, 413, CodePayloadTooLarge, "payload"},
		{"body too large", "application/json", `{"user":"u","payload":"` + strings.Repeat("p", maxBodyBytes) + `"}`, 413, CodePayloadTooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(http.MethodPost, "/v1/push", testKey, c.ct, []byte(c.body))
			expectError(t, r, c.status, c.code)
			if got, _ := r.body["field"].(string); got != c.field {
				t.Fatalf("field %q, want %q (%v)", got, c.field, r.body)
			}
		})
	}
}

func TestMultiUsersLimits(t *testing.T) {
	e := newTestEnv(t)
	users := make([]string, maxMultiUsers+1)
	for i := range users {
		users[i] = fmt.Sprintf(`"u%d"`, i)
	}
	r := e.postJSON("/v1/push/multi", `{"users":[`+strings.Join(users, ",")+`],"payload":"x"}`)
	expectError(t, r, 400, CodeInvalidArgument)
	if r.body["field"] != "users" {
		t.Fatalf("field %v", r.body["field"])
	}
	expectError(t, e.postJSON("/v1/push/multi", `{"users":[],"payload":"x"}`), 400, CodeInvalidArgument)
	r = e.postJSON("/v1/push/multi", `{"users":["a","b","a"],"payload":"x"}`)
	expectError(t, r, 400, CodeInvalidArgument)
	if r.body["field"] != "users[2]" {
		t.Fatalf("field %v", r.body["field"])
	}
	expectError(t, e.postJSON("/v1/push/multi", `{"users":["a"],"payload":"x","ttl":-5}`), 400, CodeInvalidArgument)
}

func TestRoutesAndMethods(t *testing.T) {
	e := newTestEnv(t)
	expectError(t, e.do(http.MethodGet, "/v1/push", testKey, "", nil), 405, CodeMethodNotAllowed)
	expectError(t, e.do(http.MethodPost, "/v1/messages/1", testKey, "application/json", []byte(`{}`)), 405, CodeMethodNotAllowed)
	expectError(t, e.do(http.MethodGet, "/v2/push", testKey, "", nil), 404, CodeNotFound)
	expectError(t, e.do(http.MethodGet, "/v1/messages/abc", testKey, "", nil), 400, CodeInvalidArgument)
	expectError(t, e.do(http.MethodGet, "/v1/messages/18446744073709551616", testKey, "", nil), 400, CodeInvalidArgument)
	expectError(t, e.postJSON("/v1/kick", `{"user":"u","reason":"`+strings.Repeat("r", maxReasonBytes+1)+`"}`), 400, CodeInvalidArgument)
}

// With no saver or register registered, nothing can be promised: QoS 1
// must not answer 200 (the business retries), nor must QoS 0 or queries.
func TestDownstreamUnavailable(t *testing.T) {
	e := newTestEnv(t)
	expectError(t, e.postJSON("/v1/push", `{"app":"app1","user":"u","payload":"x","qos":1}`), 503, CodeUnavailable)
	expectError(t, e.postJSON("/v1/push", `{"user":"u","payload":"x"}`), 503, CodeUnavailable)
	expectError(t, e.postJSON("/v1/push/multi", `{"users":["a","b"],"payload":"x","qos":1}`), 503, CodeUnavailable)
	expectError(t, e.postJSON("/v1/push", `{"user":"u","payload":"x","qos":0}`), 503, CodeUnavailable)
	expectError(t, e.do(http.MethodGet, "/v1/messages/12345", testKey, "", nil), 503, CodeUnavailable)
	expectError(t, e.do(http.MethodGet, "/v1/apps/app1/users/u/sessions", testKey, "", nil), 503, CodeUnavailable)
	expectError(t, e.postJSON("/v1/kick", `{"user":"u"}`), 503, CodeUnavailable)
}

// A key stops working as soon as its app is disabled in etcd, without a
// restart.
func TestDisabledAppKey(t *testing.T) {
	e := newTestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := appconfig.Put(ctx, e.cli, e.cluster, appconfig.App{Name: "app2", Secret: "secret-of-app-two-0123", APIKey: otherTestKey, Disabled: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the disable to be watched", func() bool {
		_, ok := e.srv.apps.ByAPIKey(otherTestKey)
		return !ok
	})
	expectError(t, e.do(http.MethodGet, "/v1/apps/app2/users/u/sessions", otherTestKey, "", nil), 401, CodeUnauthenticated)
}

package main

import (
	"net/http"
	"strings"
	"testing"
)

// Bad broadcast bodies get the documented 4xx codes and name the field.
func TestBroadcastBodyRules(t *testing.T) {
	e := newTestEnv(t)
	cases := []struct {
		name, ct, body string
		status         int
		code, field    string
	}{
		{"wrong content type", "text/plain", `{"payload":"x"}`, 415, CodeUnsupportedMediaType, ""},
		{"malformed", "application/json", `{"payload":`, 400, CodeInvalidArgument, ""},
		{"empty tag", "application/json", `{"payload":"x","tag":""}`, 400, CodeInvalidArgument, "tag"},
		{"tag with a control character", "application/json", `{"payload":"x","tag":"a\u0001b"}`, 400, CodeInvalidArgument, "tag"},
		{"tag too long", "application/json", `{"payload":"x","tag":"` + strings.Repeat("t", 129) + `"}`, 400, CodeInvalidArgument, "tag"},
		{"tag not a string", "application/json", `{"payload":"x","tag":7}`, 400, CodeInvalidArgument, "tag"},
		{"user is not a broadcast field", "application/json", `{"payload":"x","user":"u"}`, 400, CodeInvalidArgument, "user"},
		{"online_only not a boolean", "application/json", `{"payload":"x","online_only":"yes"}`, 400, CodeInvalidArgument, "online_only"},
		{"no payload", "application/json", `{"qos":1}`, 400, CodeInvalidArgument, "payload"},
		{"both payloads", "application/json", `{"payload":"x","payload_base64":"eA=="}`, 400, CodeInvalidArgument, "payload_base64"},
		{"qos 2", "application/json", `{"payload":"x","qos":2}`, 400, CodeInvalidArgument, "qos"},
		{"negative ttl", "application/json", `{"payload":"x","ttl":-1}`, 400, CodeInvalidArgument, "ttl"},
		{"ttl over 7 days", "application/json", `{"payload":"x","ttl":604801}`, 400, CodeInvalidArgument, "ttl"},
		{"qos 0 caught up", "application/json", `{"payload":"x","qos":0,"online_only":false}`, 400, CodeInvalidArgument, "online_only"},
		{"invalid utf-8", "application/json", "{\"payload\":\"x\xff\"}", 400, CodeInvalidArgument, ""},
		{"payload too large", "application/json", `{"payload":"` + strings.Repeat("p", maxPayloadBytes+1) + `"}`, 413, CodePayloadTooLarge, "payload"},
		{"other app", "application/json", `{"app":"app2","payload":"x"}`, 403, CodeForbidden, "app"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(http.MethodPost, "/v1/broadcast", testKey, c.ct, []byte(c.body))
			expectError(t, r, c.status, c.code)
			if got, _ := r.body["field"].(string); got != c.field {
				t.Fatalf("field %q, want %q (%v)", got, c.field, r.body)
			}
		})
	}
	expectError(t, e.do(http.MethodGet, "/v1/broadcast", testKey, "", nil), 405, CodeMethodNotAllowed)
	expectError(t, e.do(http.MethodPost, "/v1/broadcast", "", "application/json", []byte(`{"payload":"x"}`)), 401, CodeUnauthenticated)
	// With no saver nothing is accepted.
	expectError(t, e.postJSON("/v1/broadcast", `{"payload":"x"}`), 503, CodeUnavailable)
}

func TestBroadcastPlan(t *testing.T) {
	p, e := (&broadcastRequest{Payload: ptr("x"), QoS: ptr(0)}).validate("app1")
	if e != nil || !p.onlineOnly || p.ttl != defaultTTL {
		t.Fatalf("qos 0: %+v %v, want online only with the default ttl", p, e)
	}
	p, e = (&broadcastRequest{Payload: ptr("x"), TTL: ptr(int64(60)), OnlineOnly: ptr(true)}).validate("app1")
	if e != nil || p.qos != 1 || !p.onlineOnly || p.ttl.Seconds() != 60 {
		t.Fatalf("qos default: %+v %v", p, e)
	}
	p, e = (&broadcastRequest{Payload: ptr("x"), Tag: ptr("vip/ünïcode:1")}).validate("app1")
	if e != nil || p.tag != "vip/ünïcode:1" {
		t.Fatalf("tag: %+v %v", p, e)
	}
}

func ptr[T any](v T) *T { return &v }

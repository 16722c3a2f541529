package main

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pushgw/pushgw/pkg/limits"
)

// FuzzBroadcastBody feeds arbitrary bodies through the body rules and
// broadcast validation: whatever the bytes, the answer is a plan or an
// apiError with a code and a message, never a panic, and a plan is always
// one a room can send.
func FuzzBroadcastBody(f *testing.F) {
	for _, s := range []string{
		`{"app":"demo","payload":"hi","qos":1,"ttl":60}`,
		`{"payload_base64":"aGk=","qos":0}`,
		`{"payload":"x","online_only":true}`,
		`{"payload":"x","qos":0,"online_only":false}`,
		`{"payload":"x","tag":"vip"}`, `{"payload":"x","tag":""}`, "{\"payload\":\"x\",\"tag\":\"a\\u0000b\"}",
		`{"payload":"x","ttl":-1}`, `{"payload":"x"} {}`, `[1]`, "{\"payload\":\"\xff\"}", ``, `null`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/v1/broadcast", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var b broadcastRequest
		e := decodeBody(httptest.NewRecorder(), req, &b)
		if e == nil {
			var p broadcastPlan
			p, e = b.validate("demo")
			if e == nil {
				if p.qos > 1 || len(p.payload) > maxPayloadBytes || p.ttl <= 0 || p.ttl > maxTTL || (p.qos == 0 && !p.onlineOnly) ||
					(b.Tag != nil && limits.CheckTag(p.tag) != nil) {
					t.Fatalf("accepted an unsendable plan %+v from %q", p, body)
				}
				return
			}
		}
		if e.Code == "" || e.Message == "" {
			t.Fatalf("error without code or message: %+v", e)
		}
		if _, ok := statusOf[e.Code]; !ok {
			t.Fatalf("undocumented code %q", e.Code)
		}
	})
}

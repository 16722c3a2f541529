package main

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzMultiBody feeds arbitrary bodies through the multicast's body rules
// and validation (users, idempotency_key, collapse_key, priority, the
// users x payload cap) and the push body's new fields: an answer is a
// result or an apiError with a code and a message, never a panic, and a
// validated multicast stays within its bounds.
func FuzzMultiBody(f *testing.F) {
	for _, s := range []string{
		`{"users":["a","b"],"payload":"hi","idempotency_key":"k","collapse_key":"score","priority":"high"}`,
		`{"users":["a"],"payload":"x","qos":0,"collapse_key":"c"}`,
		`{"users":["a"],"payload":"x","priority":"urgent"}`,
		`{"users":["a","a"],"payload":"x"}`,
		`{"users":[],"payload":"x"}`,
		`{"user":"u","payload":"x","collapse_key":"\u0001"}`,
		`{"user":"u","payload":"x","priority":"normal","qos":0}`,
		`{"users":"a","payload":"x"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/v1/push/multi", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var m multiPushRequest
		e := decodeBodyLimit(httptest.NewRecorder(), req, &m, maxMultiBodyBytes)
		if e == nil {
			var d delivery
			d, e = m.validateMulti("demo")
			if e == nil {
				if len(m.Users) == 0 || len(m.Users) > maxMultiUsers || len(d.payload)*len(m.Users) > maxMultiBytes ||
					len(d.opts.collapseKey) > maxCollapseKeyBytes || d.opts.priority > 1 || (d.qos == 0 && (d.opts.collapseKey != "" || m.IdempotencyKey != "")) {
					t.Fatalf("accepted out of bounds: %+v", m)
				}
			}
		}
		if e != nil && (e.Code == "" || e.Message == "") {
			t.Fatalf("error without code or message: %+v", e)
		}
		req = httptest.NewRequest("POST", "/v1/push", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var p pushRequest
		if e := decodeBody(httptest.NewRecorder(), req, &p); e == nil {
			if _, e := p.validate("demo"); e != nil && (e.Code == "" || e.Message == "") {
				t.Fatalf("push error without code or message: %+v", e)
			}
		}
	})
}

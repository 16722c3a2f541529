package main

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzPushBody feeds arbitrary request bodies through the API's body rules
// and push, multi-push and kick validation: whatever the bytes, the answer is a result or an
// apiError with a code and a message, never a panic.
func FuzzPushBody(f *testing.F) {
	for _, s := range []string{
		`{"app":"demo","user":"alice","payload":"hi","qos":1,"ttl":60}`,
		`{"app":"demo","users":["a","b"],"payload_base64":"aGk=","qos":0}`,
		`{"user":"u","payload":"x","qos":7}`,
		`{"user":"u","payload":"x","ttl":-1}`,
		`{"user":"u","payload":"x"} {}`,
		`[1,2,3]`, `{"user":"\ud800"}`, "{\"user\":\"\xff\"}", `{"colour":"red"}`, ``, `null`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, dst := range []interface {
			validate(string) (delivery, *apiError)
		}{&pushRequest{}, &multiPushRequest{}} {
			req := httptest.NewRequest("POST", "/v1/push", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if e := decodeBody(httptest.NewRecorder(), req, dst); e != nil {
				if e.Code == "" || e.Message == "" {
					t.Fatalf("error without code or message: %+v", e)
				}
				continue
			}
			if _, e := dst.validate("demo"); e != nil && (e.Code == "" || e.Message == "") {
				t.Fatalf("validation error without code or message: %+v", e)
			}
		}
		// The kick body goes through the same rules.
		req := httptest.NewRequest("POST", "/v1/kick", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var kick kickRequest
		e := decodeBody(httptest.NewRecorder(), req, &kick)
		if e == nil {
			e = kick.validate("demo")
		}
		if e != nil && (e.Code == "" || e.Message == "") {
			t.Fatalf("kick error without code or message: %+v", e)
		}
	})
}

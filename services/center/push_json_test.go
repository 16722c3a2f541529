package main

import (
	"encoding/json"
	"mime"
	"testing"
)

// The unicast answer encodes itself exactly as encoding/json would.
func TestPushResponseJSON(t *testing.T) {
	zero, some := 0, 3
	for _, r := range []pushResponse{
		{ID: "1", QoS: 1},
		{ID: "18446744073709551615", QoS: 1, Replayed: true},
		{ID: "42", QoS: 0, Delivered: &zero},
		{ID: "42", QoS: 0, Delivered: &some},
		{ID: "7", QoS: 1, Replayed: true, Delivered: &some},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); string(got) != string(want) {
			t.Errorf("%+v: appendJSON %s, json.Marshal %s", r, got, want)
		}
	}
}

// The Content-Type fast path answers as mime.ParseMediaType does.
func TestIsJSONContentType(t *testing.T) {
	for _, ct := range []string{
		"application/json", "application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8",
		"application/json; charset=", "text/plain", "", "application/jsonx", "application/json; x",
	} {
		mt, _, err := mime.ParseMediaType(ct)
		if want := err == nil && mt == "application/json"; isJSONContentType(ct) != want {
			t.Errorf("%q: got %v, want %v", ct, !want, want)
		}
	}
}

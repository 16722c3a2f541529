package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBroadcastCommand(t *testing.T) {
	var gotBody map[string]any
	center := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/broadcast" || r.Header.Get("Authorization") != "Bearer key-0123456789abcdef" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":"NOT_FOUND","message":"no"}`)
			return
		}
		gotBody = nil
		json.NewDecoder(r.Body).Decode(&gotBody)
		io.WriteString(w, `{"id":"77","seq":3,"qos":1,"online_only":false,"rooms":2,"expires_ms":1}`)
	}))
	defer center.Close()
	env := map[string]string{"PUSHGW_CENTER_URL": center.URL, "PUSHGW_API_KEY": "key-0123456789abcdef"}
	code, out, stderr := runCLI(t, env, "broadcast", "--ttl", "90s", "hello all")
	if code != 0 || !strings.Contains(out, `"seq":3`) {
		t.Fatalf("exit %d out %q err %q", code, out, stderr)
	}
	if gotBody["payload"] != "hello all" || gotBody["ttl"] != float64(90) || gotBody["qos"] != float64(1) || gotBody["online_only"] != nil {
		t.Fatalf("body %v", gotBody)
	}
	if code, _, stderr := runCLI(t, env, "broadcast", "--online-only", "--qos", "0", "--base64", "/wA="); code != 0 || gotBody["online_only"] != true || gotBody["payload_base64"] != "/wA=" || gotBody["qos"] != float64(0) {
		t.Fatalf("exit %d err %q body %v", code, stderr, gotBody)
	}
	if gotBody["tag"] != nil {
		t.Fatalf("tag sent without --tag: %v", gotBody)
	}
	if code, _, stderr := runCLI(t, env, "broadcast", "--tag", "vip", "hi vips"); code != 0 || gotBody["tag"] != "vip" || gotBody["payload"] != "hi vips" {
		t.Fatalf("--tag: exit %d err %q body %v", code, stderr, gotBody)
	}
	for _, args := range [][]string{{"broadcast"}, {"broadcast", "--qos", "2", "x"}, {"broadcast", "a", "b"}, {"broadcast", "--tag", "", "x"}} {
		if code, _, _ := runCLI(t, env, args...); code != 2 {
			t.Errorf("%v: exit %d, want usage error 2", args, code)
		}
	}
}

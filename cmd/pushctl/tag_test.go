package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestTag checks what pushctl sends and prints; the routes themselves are
// tested against a real cluster in test/tags_test.go.
func TestTag(t *testing.T) {
	var mu sync.Mutex
	var bodies []int // users per write request
	var seen []string
	center := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Method+" "+r.URL.EscapedPath()+"?"+r.URL.RawQuery)
		switch {
		case r.Method == http.MethodPut || r.Method == http.MethodDelete:
			var req struct{ Users []string }
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Header.Get("Content-Type") != "application/json" {
				w.WriteHeader(400)
				io.WriteString(w, `{"code":"INVALID_ARGUMENT","message":"bad body"}`)
				return
			}
			if len(req.Users) > 0 && req.Users[0] == "eve" {
				w.WriteHeader(409)
				io.WriteString(w, `{"code":"TOO_MANY_TAGS","message":"eve has 64 tags"}`)
				return
			}
			bodies = append(bodies, len(req.Users))
			fmt.Fprintf(w, `{"tag":"vip","added":%d,"members":%d}`, len(req.Users), len(req.Users))
		case r.URL.Path == "/v1/apps/demo/users/al ice/tags":
			io.WriteString(w, `{"user":"al ice","tags":["news","vip"]}`)
		case r.URL.Path == "/v1/apps/demo/tags/a/b/users":
			// Three pages of two; the cursor names the last user.
			switch r.URL.Query().Get("cursor") {
			case "":
				io.WriteString(w, `{"tag":"a/b","users":["u1","u2"],"next_cursor":"dTI="}`)
			case "dTI=":
				io.WriteString(w, `{"tag":"a/b","users":["u3","u4"],"next_cursor":"dTQ"}`)
			default:
				io.WriteString(w, `{"tag":"a/b","users":["u5"],"next_cursor":""}`)
			}
		default:
			w.WriteHeader(404)
			io.WriteString(w, `{"code":"NOT_FOUND","message":"no route"}`)
		}
	}))
	defer center.Close()
	env := map[string]string{"PUSHGW_CENTER_URL": center.URL, "PUSHGW_API_KEY": "key-0123456789abcdef", "PUSHGW_APP": "demo"}

	users := make([]string, 2500)
	for i := range users {
		users[i] = fmt.Sprint("user", i)
	}
	code, out, stderr := runCLI(t, env, append([]string{"tag", "add", "--tag", "vip"}, users...)...)
	if code != 0 || strings.Count(out, "\n") != 3 || fmt.Sprint(bodies) != "[1000 1000 500]" {
		t.Fatalf("add 2500: exit %d, batches %v, out %q, err %q", code, bodies, out, stderr)
	}
	if seen[0] != "PUT /v1/apps/demo/tags/vip/users?" {
		t.Fatalf("request %q", seen[0])
	}
	seen, bodies = nil, nil
	code, out, _ = runCLI(t, env, "tag", "rm", "--tag", "a/b", "alice")
	if code != 0 || seen[0] != "DELETE /v1/apps/demo/tags/a%2Fb/users?" || !strings.Contains(out, `"added":1`) {
		t.Fatalf("rm: exit %d, %v, %q", code, seen, out)
	}
	code, _, stderr = runCLI(t, env, "tag", "add", "--tag", "vip", "eve")
	if code != 1 || !strings.Contains(stderr, "HTTP 409: TOO_MANY_TAGS: eve has 64 tags") {
		t.Fatalf("409: exit %d, %q", code, stderr)
	}
	code, out, _ = runCLI(t, env, "tag", "ls", "--user", "al ice")
	if code != 0 || out != `{"user":"al ice","tags":["news","vip"]}`+"\n" {
		t.Fatalf("ls --user: exit %d, %q", code, out)
	}
	seen = nil
	code, out, _ = runCLI(t, env, "tag", "ls", "--tag", "a/b", "--limit", "2")
	if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"u5"`) || !strings.Contains(seen[1], "cursor=dTI%3D") {
		t.Fatalf("ls --tag: exit %d, %q, %v", code, out, seen)
	}

	for _, args := range [][]string{
		{"tag"},
		{"tag", "frob"},
		{"tag", "add", "--tag", "vip"}, // no users
		{"tag", "add", "alice"},        // no tag
		{"tag", "ls"},                  // neither --user nor --tag
		{"tag", "ls", "--user", "u", "--tag", "t"}, // both
		{"tag", "ls", "--tag", "t", "--limit", "0"},
		{"tag", "ls", "--tag", "t", "extra"},
	} {
		if code, _, stderr := runCLI(t, env, args...); code != 2 {
			t.Errorf("%v: exit %d (%q), want 2", args, code, stderr)
		}
	}
}

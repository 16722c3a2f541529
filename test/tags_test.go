package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// tagPath is the members route of one tag of app.
func tagPath(app, tag string) string {
	return "/v1/apps/" + url.PathEscape(app) + "/tags/" + url.PathEscape(tag) + "/users"
}

func anyStrings(v any) []string {
	out := []string{}
	arr, _ := v.([]any)
	for _, x := range arr {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestTags drives the tag routes end to end (center → saver → MySQL and
// Redis): adds and removes in batches, paging, a user's tags, the other
// app's key kept out, bad input, Redis losing the sets, and pushctl.
func TestTags(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1})
	app, other := c.App, c.OtherApp

	users := make([]string, 2500)
	for i := range users {
		users[i] = fmt.Sprintf("member-%04d", i)
	}
	for start := 0; start < len(users); start += 1000 {
		batch := users[start:min(start+1000, len(users))]
		code, body := c.API("PUT", tagPath(app, "vip"), map[string]any{"users": batch})
		if code != 200 || body["added"] != float64(len(batch)) || body["members"] != float64(start+len(batch)) {
			t.Fatalf("add batch at %d: %d %v", start, code, body)
		}
	}
	code, body := c.API("DELETE", tagPath(app, "vip"), map[string]any{"users": []string{"member-0000", "member-2499", "stranger"}})
	if code != 200 || body["removed"] != 2.0 || body["members"] != 2498.0 {
		t.Fatalf("remove: %d %v", code, body)
	}
	if code, body = c.API("PUT", tagPath(app, "news"), map[string]any{"users": []string{"member-0001"}}); code != 200 {
		t.Fatalf("add to news: %d %v", code, body)
	}
	// The other app's key and the other app's tag of the same name.
	if code, body = c.APIWithKey(other.APIKey, "PUT", tagPath(other.Name, "vip"), map[string]any{"users": []string{"member-0001", "outsider"}}); code != 200 {
		t.Fatalf("other app's add: %d %v", code, body)
	}

	// Every member exactly once, in order, through the cursor.
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		q := "?limit=700"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		code, body = c.API("GET", tagPath(app, "vip")+q, nil)
		if code != 200 || page > 5 {
			t.Fatalf("page %d: %d %v", page, code, body)
		}
		got = append(got, anyStrings(body["users"])...)
		cursor, _ = body["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	if want := users[1:2499]; !reflect.DeepEqual(got, want) {
		t.Fatalf("listed %d members (first %v), want %d", len(got), got[:min(3, len(got))], len(want))
	}
	userTags := func(key, a, u string) (int, []string, map[string]any) {
		code, body := c.APIWithKey(key, "GET", "/v1/apps/"+a+"/users/"+url.PathEscape(u)+"/tags", nil)
		return code, anyStrings(body["tags"]), body
	}
	if code, tags, body := userTags(c.APIKey, app, "member-0001"); code != 200 || !reflect.DeepEqual(tags, []string{"news", "vip"}) {
		t.Fatalf("tags of member-0001: %d %v", code, body)
	}
	if code, tags, body := userTags(other.APIKey, other.Name, "member-0001"); code != 200 || !reflect.DeepEqual(tags, []string{"vip"}) {
		t.Fatalf("other app's tags of member-0001: %d %v", code, body)
	}
	if code, tags, _ := userTags(c.APIKey, app, "outsider"); code != 200 || len(tags) != 0 {
		t.Fatalf("the other app's member shows in this app: %v", tags)
	}

	// Cross-app isolation: the other app's key reads and writes nothing here.
	for _, try := range []struct{ method, path string }{
		{"GET", tagPath(app, "vip")},
		{"PUT", tagPath(app, "vip")},
		{"DELETE", tagPath(app, "vip")},
		{"GET", "/v1/apps/" + app + "/users/member-0001/tags"},
	} {
		var b any
		if try.method != "GET" {
			b = map[string]any{"users": []string{"member-0001"}}
		}
		code, body := c.APIWithKey(other.APIKey, try.method, try.path, b)
		if code != 403 || body["code"] != "FORBIDDEN" {
			t.Fatalf("other app's key, %s %s: %d %v", try.method, try.path, code, body)
		}
	}
	code, body = c.API("GET", tagPath(app, "vip")+"?limit=1", nil)
	if code != 200 || !reflect.DeepEqual(anyStrings(body["users"]), []string{"member-0001"}) {
		t.Fatalf("after the other app's tries: %d %v", code, body)
	}

	// Bad input gets its documented code.
	for _, bad := range []struct {
		method, path string
		body         any
		status       int
		code, field  string
	}{
		{"PUT", tagPath(app, "vip"), `{"users":["a"],"extra":1}`, 400, "INVALID_ARGUMENT", "extra"},
		{"PUT", tagPath(app, "vip"), `{"users":[]}`, 400, "INVALID_ARGUMENT", "users"},
		{"PUT", tagPath(app, "vip"), `{"users":["a","a"]}`, 400, "INVALID_ARGUMENT", "users[1]"},
		{"PUT", tagPath(app, strings.Repeat("t", 129)), `{"users":["a"]}`, 400, "INVALID_ARGUMENT", "tag"},
		{"PUT", "/v1/apps/" + app + "/tags/bad%07tag/users", `{"users":["a"]}`, 400, "INVALID_ARGUMENT", "tag"},
		{"GET", tagPath(app, "vip") + "?cursor=!!", nil, 400, "INVALID_ARGUMENT", "cursor"},
		{"GET", tagPath(app, "vip") + "?limit=5000", nil, 400, "INVALID_ARGUMENT", "limit"},
		{"POST", tagPath(app, "vip"), `{"users":["a"]}`, 405, "METHOD_NOT_ALLOWED", ""},
	} {
		code, body := c.API(bad.method, bad.path, bad.body)
		if code != bad.status || body["code"] != bad.code || (body["field"] == nil) != (bad.field == "") || (bad.field != "" && body["field"] != bad.field) {
			t.Errorf("%s %s %v: %d %v, want %d %s field %q", bad.method, bad.path, bad.body, code, body, bad.status, bad.code, bad.field)
		}
	}
	if code, body = c.APIWithKey("", "PUT", tagPath(app, "vip"), map[string]any{"users": []string{"a"}}); code != 401 {
		t.Fatalf("no key: %d %v", code, body)
	}

	// Redis loses everything: reads stay right (MySQL), and the sets come
	// back.
	rdb := c.Redis()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	Eventually(t, 10*time.Second, "the user's tag set to be filled", func() bool {
		userTags(c.APIKey, app, "member-0001")
		n, _ := rdb.Exists(ctx, fmt.Sprintf("utag:{%d:%s:member-0001}", len(app), app)).Result()
		return n == 1
	})
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if code, tags, body := userTags(c.APIKey, app, "member-0001"); code != 200 || !reflect.DeepEqual(tags, []string{"news", "vip"}) {
		t.Fatalf("tags after FLUSHALL: %d %v", code, body)
	}
	code, body = c.API("GET", tagPath(app, "vip")+"?limit=2", nil)
	if code != 200 || !reflect.DeepEqual(anyStrings(body["users"]), []string{"member-0001", "member-0002"}) {
		t.Fatalf("members after FLUSHALL: %d %v", code, body)
	}
	Eventually(t, 10*time.Second, "the user's tag set to be refilled", func() bool {
		n, _ := rdb.Exists(ctx, fmt.Sprintf("utag:{%d:%s:member-0001}", len(app), app)).Result()
		return n == 1
	})
	if code, tags, _ := userTags(c.APIKey, app, "member-0001"); code != 200 || !reflect.DeepEqual(tags, []string{"news", "vip"}) {
		t.Fatalf("tags from the refilled set: %v", tags)
	}

	// pushctl against the same cluster.
	pushctl := filepath.Join(c.binDir, "pushctl")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(pushctl, args...)
		cmd.Env = append(os.Environ(), "PUSHGW_CENTER_URL="+c.CenterURL, "PUSHGW_APP="+app, "PUSHGW_API_KEY="+c.APIKey)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pushctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("tag", "add", "--tag", "city/北京", "ann", "ben"); !strings.Contains(out, `"added":2`) {
		t.Fatalf("pushctl tag add: %s", out)
	}
	run("tag", "rm", "--tag", "city/北京", "ben")
	var tagsOut struct{ Tags []string }
	if out := run("tag", "ls", "--user", "ann"); json.Unmarshal([]byte(out), &tagsOut) != nil || !reflect.DeepEqual(tagsOut.Tags, []string{"city/北京"}) {
		t.Fatalf("pushctl tag ls --user: %s", out)
	}
	if out := run("tag", "ls", "--tag", "city/北京"); !strings.Contains(out, `"users":["ann"]`) {
		t.Fatalf("pushctl tag ls --tag: %s", out)
	}
}

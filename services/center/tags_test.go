package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/internal/proctest"
	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// startSaver builds and runs the real saver in e's cluster, on a private
// redis-server and a MySQL database of its own (dropped at the end), and
// waits until center reaches it.
func startSaver(t *testing.T, e *testEnv) *proctest.Server {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "saver"), "github.com/pushgw/pushgw/services/saver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build saver: %v\n%s", err, out)
	}
	db := fmt.Sprintf("pushgw_center_test_%d_%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		root, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/")
		if err != nil {
			t.Error(err)
			return
		}
		defer root.Close()
		if _, err := root.Exec("DROP DATABASE IF EXISTS `" + db + "`"); err != nil {
			t.Errorf("drop %s: %v", db, err)
		}
	})
	redisAddr := redistest.Start(t).Addr()
	srv := proctest.Start(t, func() proctest.Spec {
		admin := freeport.Addr(t)
		return proctest.Spec{
			Name: "saver", Bin: filepath.Join(dir, "saver"), Dir: dir,
			Args: []string{"-cluster", e.cluster, "-etcd", "127.0.0.1:2379", "-grpc", freeport.Addr(t), "-admin", admin,
				"-redis", redisAddr, "-mysql", "root@tcp(127.0.0.1:3306)/" + db},
			Ready: func() error {
				c := http.Client{Timeout: time.Second}
				resp, err := c.Get("http://" + admin + "/healthz")
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("healthz %d", resp.StatusCode)
				}
				return nil
			},
		}
	})
	waitFor(t, "center to reach saver", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := e.srv.saver.UserTags(ctx, &internalpb.UserTagsRequest{App: "app1", User: "probe"})
		return err == nil
	})
	return srv
}

func (e *testEnv) tagUsers(method, tag string, users ...string) reply {
	e.t.Helper()
	body := `{"users":["` + strings.Join(users, `","`) + `"]}`
	return e.do(method, "/v1/apps/app1/tags/"+tag+"/users", testKey, "application/json", []byte(body))
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// Every rule of the tag routes is checked before saver is asked (none
// runs here), with the codes of docs/openapi.yaml.
func TestTagRoutesBadInput(t *testing.T) {
	e := newTestEnv(t)
	put := func(path, body string) reply {
		return e.do(http.MethodPut, path, testKey, "application/json", []byte(body))
	}
	many := make([]string, maxTagUsers+1)
	for i := range many {
		many[i] = fmt.Sprintf(`"u%d"`, i)
	}
	const p = "/v1/apps/app1/tags/news/users"
	cases := []struct {
		name  string
		r     reply
		code  string
		field string
	}{
		{"no users", put(p, `{"users":[]}`), CodeInvalidArgument, "users"},
		{"users missing", put(p, `{}`), CodeInvalidArgument, "users"},
		{"too many users", put(p, `{"users":[`+strings.Join(many, ",")+`]}`), CodeInvalidArgument, "users"},
		{"duplicate user", put(p, `{"users":["a","b","a"]}`), CodeInvalidArgument, "users[2]"},
		{"empty user", put(p, `{"users":["a",""]}`), CodeInvalidArgument, "users[1]"},
		{"long user", put(p, `{"users":["`+strings.Repeat("u", maxUserBytes+1)+`"]}`), CodeInvalidArgument, "users[0]"},
		{"unknown field", put(p, `{"users":["a"],"tag":"x"}`), CodeInvalidArgument, "tag"},
		{"users not an array", put(p, `{"users":"a"}`), CodeInvalidArgument, "users"},
		{"bad utf-8 body", put(p, "{\"users\":[\"a\xff\"]}"), CodeInvalidArgument, ""},
		{"two values", put(p, `{"users":["a"]} {}`), CodeInvalidArgument, ""},
		{"long tag", put("/v1/apps/app1/tags/"+strings.Repeat("t", limits.MaxTagLen+1)+"/users", `{"users":["a"]}`), CodeInvalidArgument, "tag"},
		{"control char in tag", put("/v1/apps/app1/tags/a%0Ab/users", `{"users":["a"]}`), CodeInvalidArgument, "tag"},
		{"bad utf-8 tag", put("/v1/apps/app1/tags/a%FF/users", `{"users":["a"]}`), CodeInvalidArgument, "tag"},
		{"wrong content type", e.do(http.MethodDelete, p, testKey, "text/plain", []byte(`{"users":["a"]}`)), CodeUnsupportedMediaType, ""},
		{"other app", put("/v1/apps/app2/tags/news/users", `{"users":["a"]}`), CodeForbidden, "app"},
		{"other app, list", e.do(http.MethodGet, "/v1/apps/app2/tags/news/users", testKey, "", nil), CodeForbidden, "app"},
		{"other app, user tags", e.do(http.MethodGet, "/v1/apps/app2/users/u/tags", testKey, "", nil), CodeForbidden, "app"},
		{"no key", e.do(http.MethodPut, p, "", "application/json", []byte(`{"users":["a"]}`)), CodeUnauthenticated, ""},
		{"limit 0", e.do(http.MethodGet, p+"?limit=0", testKey, "", nil), CodeInvalidArgument, "limit"},
		{"limit too big", e.do(http.MethodGet, p+"?limit=1001", testKey, "", nil), CodeInvalidArgument, "limit"},
		{"limit not a number", e.do(http.MethodGet, p+"?limit=ten", testKey, "", nil), CodeInvalidArgument, "limit"},
		{"bad cursor", e.do(http.MethodGet, p+"?cursor=***", testKey, "", nil), CodeInvalidArgument, "cursor"},
		{"unknown parameter", e.do(http.MethodGet, p+"?offset=5", testKey, "", nil), CodeInvalidArgument, "offset"},
		{"repeated parameter", e.do(http.MethodGet, p+"?limit=5&limit=6", testKey, "", nil), CodeInvalidArgument, "limit"},
		{"bad utf-8 user", e.do(http.MethodGet, "/v1/apps/app1/users/%ff/tags", testKey, "", nil), CodeInvalidArgument, "user"},
		{"wrong method", e.do(http.MethodPost, p, testKey, "application/json", []byte(`{"users":["a"]}`)), CodeMethodNotAllowed, ""},
		{"wrong method, user tags", e.do(http.MethodPut, "/v1/apps/app1/users/u/tags", testKey, "", nil), CodeMethodNotAllowed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectError(t, c.r, statusOf[c.code], c.code)
			if got, _ := c.r.body["field"].(string); got != c.field {
				t.Fatalf("field %q, want %q (%v)", got, c.field, c.r.body)
			}
		})
	}
	// Saver down: well-formed calls answer 503, never 200.
	expectError(t, e.tagUsers(http.MethodPut, "news", "a"), 503, CodeUnavailable)
	expectError(t, e.do(http.MethodGet, "/v1/apps/app1/users/u/tags", testKey, "", nil), 503, CodeUnavailable)
}

// The routes against the real saver: adds, removes, paging, a user's tags
// and the per-user bound.
func TestTagRoutes(t *testing.T) {
	e := newTestEnv(t)
	startSaver(t, e)
	r := e.tagUsers(http.MethodPut, "news", "carol", "alice", "bob")
	if r.status != 200 || r.body["added"] != 3.0 || r.body["members"] != 3.0 || r.body["tag"] != "news" {
		t.Fatalf("add: %d %v", r.status, r.body)
	}
	r = e.tagUsers(http.MethodPut, "news", "alice", "dave")
	if r.status != 200 || r.body["added"] != 1.0 || r.body["members"] != 4.0 {
		t.Fatalf("re-add: %d %v", r.status, r.body)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		r = e.do(http.MethodGet, "/v1/apps/app1/tags/news/users?limit=3&cursor="+cursor, testKey, "", nil)
		if r.status != 200 {
			t.Fatalf("page: %d %v", r.status, r.body)
		}
		got = append(got, strs(r.body["users"])...)
		cursor, _ = r.body["next_cursor"].(string)
		if cursor == "" {
			break
		}
		if pages > 3 {
			t.Fatal("paging does not end")
		}
	}
	if want := []string{"alice", "bob", "carol", "dave"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	r = e.do(http.MethodDelete, "/v1/apps/app1/tags/news/users", testKey, "application/json", []byte(`{"users":["bob","zed"]}`))
	if r.status != 200 || r.body["removed"] != 1.0 || r.body["members"] != 3.0 {
		t.Fatalf("remove: %d %v", r.status, r.body)
	}
	// A tag name with a slash travels as one escaped path segment.
	if r = e.tagUsers(http.MethodPut, "city%2F%E5%8C%97%E4%BA%AC", "alice"); r.status != 200 {
		t.Fatalf("add to escaped tag: %d %v", r.status, r.body)
	}
	r = e.do(http.MethodGet, "/v1/apps/app1/users/alice/tags", testKey, "", nil)
	if r.status != 200 || !reflect.DeepEqual(strs(r.body["tags"]), []string{"city/北京", "news"}) {
		t.Fatalf("alice's tags: %d %v", r.status, r.body)
	}
	r = e.do(http.MethodGet, "/v1/apps/app1/users/nobody/tags", testKey, "", nil)
	if r.status != 200 || len(r.body["tags"].([]any)) != 0 {
		t.Fatalf("nobody's tags: %d %v", r.status, r.body)
	}

	// The per-user bound: the 65th tag is refused whole, naming the user.
	for i := range limits.MaxTagsPerUser - 1 {
		if r = e.tagUsers(http.MethodPut, fmt.Sprint("t", i), "eve"); r.status != 200 {
			t.Fatalf("tag %d: %d %v", i, r.status, r.body)
		}
	}
	if r = e.tagUsers(http.MethodPut, "last", "frank", "eve"); r.status != 200 {
		t.Fatalf("64th tag: %d %v", r.status, r.body)
	}
	r = e.tagUsers(http.MethodPut, "one-too-many", "grace", "eve")
	expectError(t, r, 409, CodeTooManyTags)
	if r.body["field"] != "users[1]" || !strings.Contains(r.body["message"].(string), `"eve"`) {
		t.Fatalf("409 does not name eve: %v", r.body)
	}
	r = e.do(http.MethodGet, "/v1/apps/app1/tags/one-too-many/users", testKey, "", nil)
	if r.status != 200 || len(r.body["users"].([]any)) != 0 {
		t.Fatalf("refused add left members: %v", r.body)
	}
}

func TestForEachTagMember(t *testing.T) {
	e := newTestEnv(t)
	saver := startSaver(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var want []string
	for i := range 2345 {
		want = append(want, fmt.Sprintf("user-%04d", i))
	}
	for start := 0; start < len(want); start += maxTagUsers {
		batch := want[start:min(start+maxTagUsers, len(want))]
		if _, err := e.srv.saver.AddTagUsers(ctx, &internalpb.TagUsersRequest{App: "app1", Tag: "big", Users: batch}); err != nil {
			t.Fatal(err)
		}
	}
	walk := func(tag string, batch int) ([]string, []int, error) {
		var got []string
		var sizes []int
		err := e.srv.forEachTagMember(ctx, "app1", tag, batch, func(users []string) error {
			got = append(got, users...)
			sizes = append(sizes, len(users))
			return nil
		})
		return got, sizes, err
	}
	got, sizes, err := walk("big", 1000)
	if err != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(sizes, []int{1000, 1000, 345}) {
		t.Fatalf("walk of 2345 by 1000: %v, %d users, batches %v", err, len(got), sizes)
	}
	// A batch that divides the tag exactly ends without an empty call.
	if _, sizes, err = walk("big", 469); err != nil || !reflect.DeepEqual(sizes, []int{469, 469, 469, 469, 469}) {
		t.Fatalf("walk by 469: %v, batches %v", err, sizes)
	}
	if got, sizes, err = walk("empty", 10); err != nil || len(got) != 0 || len(sizes) != 0 {
		t.Fatalf("walk of an empty tag: %v %v", got, err)
	}
	for _, bad := range []int{0, tagPageMax + 1} {
		if _, _, err := walk("big", bad); err == nil {
			t.Fatalf("batch %d accepted", bad)
		}
	}
	// fn's error stops the walk and comes back as is.
	stop := errors.New("enough")
	calls := 0
	err = e.srv.forEachTagMember(ctx, "app1", "big", 100, func([]string) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("fn error: %v after %d calls", err, calls)
	}
	// With saver gone each page call gives up at its deadline.
	saver.Kill()
	start := time.Now()
	if _, _, err = walk("big", 1000); err == nil {
		t.Fatal("walk without saver succeeded")
	}
	if d := time.Since(start); d > downstreamTimeout+2*time.Second {
		t.Fatalf("walk without saver took %v", d)
	}
}

// The tag routes and their codes are in the contract (docs/openapi.yaml).
func TestOpenAPIListsTagRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for _, want := range []string{"  /v1/apps/{app}/tags/{tag}/users:", "  /v1/apps/{app}/users/{user}/tags:",
		"    put:", "    delete:", "TAG_FULL, TOO_MANY_TAGS", "    TagConflict:"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/openapi.yaml lacks %q", want)
		}
	}
}

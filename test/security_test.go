package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Limits the security tests rely on (services/center/limits.go).
const (
	centerMaxBody = 1 << 20
	// hugeBody is what a hostile caller sends; hugeBodies of them in a row.
	hugeBody   = 16 << 20
	hugeBodies = 8
	// maxCenterAlloc bounds what center may allocate while refusing all of
	// them: below the bytes sent (128 MiB), so reading whole bodies would
	// show (io.ReadAll of one 16 MiB body alone allocates about 32 MiB),
	// yet twice what a -race build of center was measured to allocate.
	maxCenterAlloc = hugeBodies * hugeBody * 3 / 4
)

// adminPaths are served on every admin listener and must be on no other.
var adminPaths = []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap", "/healthz"}

// serviceBinaries are the binaries whose admin flag default is checked.
var serviceBinaries = []string{"center", "coordinator", "dispatcher", "register", "room", "saver"}

func TestSecurity(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1})
	room := c.RoomTCP[0]

	t.Run("admin endpoints are served on the admin listener only", func(t *testing.T) {
		hc := &http.Client{Timeout: 5 * time.Second}
		for _, name := range sortedProcs(c) {
			p := c.Procs[name]
			for _, path := range adminPaths {
				resp, err := hc.Get("http://" + p.Admin + path)
				if err != nil {
					t.Fatalf("%s admin %s: %v", name, path, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s admin %s: status %d, want 200", name, path, resp.StatusCode)
				}
			}
			for _, flagName := range []string{"-http", "-grpc"} {
				addr := argValue(p.Args, flagName)
				if addr == "" {
					continue
				}
				for _, path := range adminPaths {
					resp, err := hc.Get("http://" + addr + path)
					if err != nil {
						if flagName == "-http" {
							t.Fatalf("%s %s %s: %v", name, flagName, path, err)
						}
						continue // a gRPC listener does not speak HTTP/1: fine
					}
					body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					if flagName == "-http" && resp.StatusCode != http.StatusNotFound {
						t.Fatalf("%s public HTTP %s %s: status %d, want 404", name, addr, path, resp.StatusCode)
					}
					if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "go_goroutines") {
						t.Fatalf("%s %s listener %s serves %s", name, flagName, addr, path)
					}
				}
			}
		}
		// The room's client port speaks frames only: an HTTP request is a
		// bad frame, never metrics.
		rc := Dial(t, room)
		rc.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
		rc.ExpectErrorAndClose(protocol.CodeBadFrame)
	})

	t.Run("every service's -admin default is a loopback address", func(t *testing.T) {
		bins := map[string]string{}
		for _, p := range c.Procs {
			bins[baseName(p.Bin)] = p.Bin
		}
		re := regexp.MustCompile(`(?m)^\s+-admin string\n\s+.*\(default "([^"]*)"\)`)
		for _, name := range serviceBinaries {
			bin, ok := bins[name]
			if !ok {
				t.Fatalf("cluster has no %s binary", name)
			}
			cmd := exec.Command(bin, "-h")
			cmd.Env = envWithoutPushgw()
			out, _ := cmd.CombinedOutput() // -h exits 0 or 2 depending on the flag package
			m := re.FindSubmatch(out)
			if m == nil {
				t.Fatalf("%s -h lists no -admin default:\n%s", name, out)
			}
			host, _, err := net.SplitHostPort(string(m[1]))
			if err != nil || host != "127.0.0.1" {
				t.Fatalf("%s: -admin default %q, want a 127.0.0.1 address", name, m[1])
			}
		}
	})

	t.Run("admin listeners answer on 127.0.0.1 and not on 127.0.0.2", func(t *testing.T) {
		// The check means something only if 127.0.0.2 reaches a port bound
		// to all addresses, as it does on Linux.
		wild, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		_, wport, _ := net.SplitHostPort(wild.Addr().String())
		if nc, err := net.DialTimeout("tcp", "127.0.0.2:"+wport, 2*time.Second); err != nil {
			wild.Close()
			t.Fatalf("127.0.0.2 does not reach a wildcard listener here (%v), so this test cannot tell the bindings apart; it needs Linux loopback routing all of 127.0.0.0/8 (ip addr show lo)", err)
		} else {
			nc.Close()
		}
		wild.Close()
		for _, name := range sortedProcs(c) {
			_, port, _ := net.SplitHostPort(c.Procs[name].Admin)
			nc, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 2*time.Second)
			if err != nil {
				t.Fatalf("%s admin on 127.0.0.1: %v", name, err)
			}
			nc.Close()
			nc, err = net.DialTimeout("tcp", "127.0.0.2:"+port, 2*time.Second)
			if err == nil {
				nc.Close()
				t.Fatalf("%s admin port %s answers on 127.0.0.2: it is bound to all addresses", name, port)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("%s admin on 127.0.0.2: %v, want connection refused", name, err)
			}
		}
	})

	// App A is the cluster's app, app B its other one; both have a user
	// called alice.
	a, b := c.App, c.OtherApp
	otherToken := func(user string) string {
		tok, err := token.Mint([]byte(b.Secret), token.Claims{App: b.Name, User: user, Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	t.Run("same user name in two apps: sessions, pushes and kicks stay in their app", func(t *testing.T) {
		ra := Dial(t, room)
		ra.Auth(c.Token("alice", "phone", time.Hour))
		stopA := keepPinging(t, ra, 300*time.Millisecond)
		defer stopA()
		rb := Dial(t, room)
		rb.Auth(otherToken("alice"))
		stopB := keepPinging(t, rb, 300*time.Millisecond)
		defer stopB()

		// Each app sees exactly its own alice.
		for _, k := range []struct{ app, key string }{{a, c.APIKey}, {b.Name, b.APIKey}} {
			Eventually(t, 10*time.Second, "one session of "+k.app+"/alice", func() bool {
				code, out := c.APIWithKey(k.key, "GET", "/v1/apps/"+k.app+"/users/alice/sessions", nil)
				s, _ := out["sessions"].([]any)
				return code == 200 && len(s) == 1
			})
		}

		idA := c.Push("alice", 1, time.Hour, "for A's alice")
		p, err := ra.NextPush(10 * time.Second)
		if err != nil || p.GetId() != idA || p.GetApp() != a {
			t.Fatalf("A/alice: push %v, %v; want %d of app %s", p, err, idA, a)
		}
		code, out := c.APIWithKey(b.APIKey, "POST", "/v1/push", map[string]any{"app": b.Name, "user": "alice", "payload": "for B's alice", "qos": 1})
		if code != 200 {
			t.Fatalf("push as B: %d %v", code, out)
		}
		idB, _ := strconv.ParseUint(fmt.Sprint(out["id"]), 10, 64)
		p, err = rb.NextPush(10 * time.Second)
		if err != nil || p.GetId() != idB || p.GetApp() != b.Name || string(p.GetPayload()) != "for B's alice" {
			t.Fatalf("B/alice: push %v, %v; want %d of app %s", p, err, idB, b.Name)
		}
		// Neither got the other's message (a PUSH would have arrived before
		// the other app's, which each has already read).
		if p, err := ra.NextPush(1500 * time.Millisecond); err == nil {
			t.Fatalf("A/alice got a second push %v", p)
		}
		if p, err := rb.NextPush(1500 * time.Millisecond); err == nil {
			t.Fatalf("B/alice got a second push %v", p)
		}

		// A kicks its alice; B's alice stays connected and served.
		code, out = c.API("POST", "/v1/kick", map[string]any{"app": a, "user": "alice", "reason": "isolation test"})
		if code != 200 || out["kicked"] != float64(1) {
			t.Fatalf("kick A/alice: %d %v", code, out)
		}
		stopA()
		expectKick(t, ra, protocol.CodeKicked)
		stopB()
		rb.Ping()
		waitSession(t, c, "alice", 0)
		code, out = c.APIWithKey(b.APIKey, "GET", "/v1/apps/"+b.Name+"/users/alice/sessions", nil)
		if s, _ := out["sessions"].([]any); code != 200 || len(s) != 1 {
			t.Fatalf("B/alice after A's kick: %d %v", code, out)
		}
	})

	t.Run("an app key acts only on its own app", func(t *testing.T) {
		cases := []struct {
			name, method, path string
			body               any
		}{
			{"multi push", "POST", "/v1/push/multi", map[string]any{"app": b.Name, "users": []string{"alice"}, "payload": "x"}},
			{"sessions", "GET", "/v1/apps/" + b.Name + "/users/alice/sessions", nil},
			{"kick", "POST", "/v1/kick", map[string]any{"app": b.Name, "user": "alice"}},
		}
		for _, tc := range cases {
			code, out := c.API(tc.method, tc.path, tc.body)
			if code != http.StatusForbidden || out["code"] != "FORBIDDEN" {
				t.Fatalf("%s on app B with A's key: %d %v, want 403 FORBIDDEN", tc.name, code, out)
			}
		}
		// And the other way round.
		code, out := c.APIWithKey(b.APIKey, "GET", "/v1/apps/"+a+"/users/alice/sessions", nil)
		if code != http.StatusForbidden {
			t.Fatalf("sessions of app A with B's key: %d %v, want 403", code, out)
		}
	})

	t.Run("forged, malformed and misplaced keys are 401 on every route", func(t *testing.T) {
		routes := []struct {
			method, path string
			body         any
		}{
			{"POST", "/v1/push", map[string]any{"app": a, "user": "u", "payload": "x"}},
			{"POST", "/v1/push/multi", map[string]any{"app": a, "users": []string{"u"}, "payload": "x"}},
			{"GET", "/v1/messages/1", nil},
			{"GET", "/v1/apps/" + a + "/users/u/sessions", nil},
			{"POST", "/v1/kick", map[string]any{"app": a, "user": "u"}},
		}
		flipped := []byte(c.APIKey)
		flipped[len(flipped)-1] ^= 1
		headers := map[string]string{
			"random key":               "Bearer " + randHex(16),
			"long random key":          "Bearer " + randHex(512),
			"key with one bit flipped": "Bearer " + string(flipped),
			"key with a suffix":        "Bearer " + c.APIKey + "0",
			"key prefix":               "Bearer " + c.APIKey[:len(c.APIKey)-1],
			"the app secret as key":    "Bearer " + c.Secret,
			"a client token as key":    "Bearer " + c.Token("u", "d", time.Hour),
			"empty bearer":             "Bearer ",
			"basic scheme":             "Basic " + c.APIKey,
			"bare key":                 c.APIKey,
		}
		for _, r := range routes {
			for what, h := range headers {
				code, out := centerRequest(t, c.CenterURL, r.method, r.path, r.body, h)
				if code != http.StatusUnauthorized || out["code"] != "UNAUTHENTICATED" {
					t.Fatalf("%s %s with %s: %d %v, want 401 UNAUTHENTICATED", r.method, r.path, what, code, out)
				}
			}
			// A key in the query string is not a key.
			code, out := centerRequest(t, c.CenterURL, r.method, r.path+"?api_key="+c.APIKey, r.body, "")
			if code != http.StatusUnauthorized {
				t.Fatalf("%s %s with the key in the query: %d %v, want 401", r.method, r.path, code, out)
			}
		}
	})

	t.Run("a deleted or disabled app loses its key and its tokens", func(t *testing.T) {
		for _, how := range []string{"deleted", "disabled"} {
			app := appconfig.App{Name: how + "-" + randHex(4), Secret: randHex(16), APIKey: randHex(16)}
			putApp(t, c, app)
			mint := func() string {
				tok, _ := token.Mint([]byte(app.Secret), token.Claims{App: app.Name, User: "u", Expiry: time.Now().Add(time.Hour)})
				return tok
			}
			Eventually(t, 10*time.Second, "center knows app "+app.Name, func() bool {
				code, _ := c.APIWithKey(app.APIKey, "GET", "/v1/apps/"+app.Name+"/users/u/sessions", nil)
				return code == 200
			})
			Eventually(t, 10*time.Second, "room knows app "+app.Name, func() bool {
				return authCode(t, room, mint()) == protocol.CodeOK
			})
			if how == "deleted" {
				deleteApp(t, c, app.Name)
			} else {
				app.Disabled = true
				putApp(t, c, app)
			}
			Eventually(t, 10*time.Second, "center refuses the key of the "+how+" app", func() bool {
				code, out := c.APIWithKey(app.APIKey, "GET", "/v1/apps/"+app.Name+"/users/u/sessions", nil)
				return code == http.StatusUnauthorized && out["code"] == "UNAUTHENTICATED"
			})
			Eventually(t, 10*time.Second, "room refuses tokens of the "+how+" app", func() bool {
				return authCode(t, room, mint()) == protocol.CodeAppUnknown
			})
			code, out := c.APIWithKey(app.APIKey, "POST", "/v1/push", map[string]any{"app": app.Name, "user": "u", "payload": "x"})
			if code != http.StatusUnauthorized {
				t.Fatalf("push with the %s app's key: %d %v", how, code, out)
			}
		}
	})

	t.Run("bodies with invalid UTF-8 are 400", func(t *testing.T) {
		bodies := map[string][]byte{
			"/v1/push":       []byte(`{"app":"` + a + `","user":"al` + "\xff" + `ice","payload":"x"}`),
			"/v1/push/multi": []byte(`{"app":"` + a + `","users":["u"],"payload":"caf` + "\xc3\x28" + `"}`),
			"/v1/kick":       []byte(`{"app":"` + a + `","user":"u","reason":"` + "\xed\xa0\x80" + `"}`),
		}
		for path, body := range bodies {
			code, out := c.API("POST", path, body)
			if code != http.StatusBadRequest || out["code"] != "INVALID_ARGUMENT" {
				t.Fatalf("%s with invalid UTF-8: %d %v, want 400 INVALID_ARGUMENT", path, code, out)
			}
		}
	})

	t.Run("bad ttl on multi push is 400", func(t *testing.T) {
		for _, ttl := range []int64{-1, -5, 8 * 24 * 3600} {
			code, out := c.API("POST", "/v1/push/multi", map[string]any{"app": a, "users": []string{"u"}, "payload": "x", "qos": 1, "ttl": ttl})
			if code != http.StatusBadRequest || out["code"] != "INVALID_ARGUMENT" || out["field"] != "ttl" {
				t.Fatalf("multi with ttl %d: %d %v, want 400 on field ttl", ttl, code, out)
			}
		}
	})

	t.Run("huge bodies are 413 and do not grow center's memory", func(t *testing.T) {
		admin := c.Procs["center"].Admin
		before := ScrapeAdmin(t, admin)
		for i := 0; i < hugeBodies; i++ {
			chunked := i%2 == 1
			status, out := hugePost(t, c.CenterURL, "/v1/push", c.APIKey, a, hugeBody, chunked)
			if status != http.StatusRequestEntityTooLarge || out["code"] != "PAYLOAD_TOO_LARGE" {
				t.Fatalf("%d MiB body (chunked %v): %d %v, want 413 PAYLOAD_TOO_LARGE", hugeBody>>20, chunked, status, out)
			}
		}
		// Without a key the body is not read at all.
		if status, _ := hugePost(t, c.CenterURL, "/v1/push", "", a, hugeBody, false); status != http.StatusUnauthorized {
			t.Fatalf("unauthenticated huge body: %d, want 401", status)
		}
		// A list of 100,001 users fits the body limit and is refused by count.
		users := make([]string, 100_001)
		for i := range users {
			users[i] = "u" + strconv.Itoa(i)
		}
		code, out := c.API("POST", "/v1/push/multi", map[string]any{"app": a, "users": users, "payload": "x"})
		if code != http.StatusBadRequest || out["field"] != "users" {
			t.Fatalf("100,001 users: %d %v, want 400 on field users", code, out)
		}
		after := ScrapeAdmin(t, admin)
		alloc := after["go_memstats_alloc_bytes_total"] - before["go_memstats_alloc_bytes_total"]
		heap := after["go_memstats_heap_inuse_bytes"] - before["go_memstats_heap_inuse_bytes"]
		t.Logf("center while refusing %d x %d MiB: allocated %.1f MiB, heap in use %+.1f MiB", hugeBodies, hugeBody>>20, alloc/(1<<20), heap/(1<<20))
		if alloc > maxCenterAlloc {
			t.Fatalf("center allocated %.1f MiB refusing %d bodies of %d MiB: it reads more than its %d-byte limit", alloc/(1<<20), hugeBodies, hugeBody>>20, centerMaxBody)
		}
		if heap > maxHeapGrowth {
			t.Fatalf("center heap in use grew by %.1f MiB", heap/(1<<20))
		}
		// Center still works.
		c.Push("after-huge", 1, time.Hour, "ok")
	})
}

// sortedProcs lists the cluster's process names in a stable order.
func sortedProcs(c *Cluster) []string {
	var names []string
	for n := range c.Procs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// argValue returns the value after flag in args ("" when absent).
func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

func baseName(path string) string { return path[strings.LastIndexByte(path, '/')+1:] }

// envWithoutPushgw is the environment minus PUSHGW_* variables, so flag
// defaults are the compiled-in ones.
func envWithoutPushgw() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHGW_") {
			env = append(env, kv)
		}
	}
	return env
}

// expectKick reads until a KICK with code, then expects the close.
func expectKick(t *testing.T, rc *RawClient, code protocol.Code) {
	t.Helper()
	for {
		f, m, err := rc.Read(10 * time.Second)
		if err != nil {
			t.Fatalf("want KICK %s, got %v", code, err)
		}
		if f.Op == protocol.OpPong {
			continue
		}
		k, ok := m.(*clientpb.Kick)
		if !ok || protocol.Code(k.GetCode()) != code {
			t.Fatalf("got %s %v, want KICK %s", f.Op, m, code)
		}
		break
	}
	rc.ExpectClosed()
}

// authCode connects, sends AUTH with tok and returns CodeOK for an
// AUTH_REPLY or the code of the ERROR.
func authCode(t *testing.T, addr, tok string) protocol.Code {
	t.Helper()
	rc := Dial(t, addr)
	defer rc.Conn.Close()
	rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok})
	f, m, err := rc.Read(5 * time.Second)
	if err != nil {
		t.Fatalf("auth: %v", err)
	}
	switch f.Op {
	case protocol.OpAuthReply:
		return protocol.CodeOK
	case protocol.OpError:
		return protocol.Code(m.(*clientpb.Error).GetCode())
	}
	t.Fatalf("auth: got %s %v", f.Op, m)
	return 0
}

// withEtcd runs f with a client of the cluster's etcd.
func withEtcd(t *testing.T, c *Cluster, f func(ctx context.Context, cli *clientv3.Client) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{c.Etcd}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := f(ctx, cli); err != nil {
		t.Fatal(err)
	}
}

// putApp writes an app config to the cluster's etcd.
func putApp(t *testing.T, c *Cluster, app appconfig.App) {
	t.Helper()
	withEtcd(t, c, func(ctx context.Context, cli *clientv3.Client) error {
		return appconfig.Put(ctx, cli, c.Name, app)
	})
}

// deleteApp removes an app config from the cluster's etcd.
func deleteApp(t *testing.T, c *Cluster, name string) {
	t.Helper()
	withEtcd(t, c, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Delete(ctx, appconfig.Prefix(c.Name)+name)
		return err
	})
}

// centerRequest calls center with a raw Authorization header ("" for none).
func centerRequest(t *testing.T, base, method, path string, body any, auth string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = strings.NewReader(string(j))
	}
	req, _ := http.NewRequest(method, base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return doJSON(t, req)
}

// hugePost sends a POST whose body is size bytes (a JSON object that never
// ends) over a raw connection, writing it while reading the answer: center
// is expected to answer and close long before the body is through.
func hugePost(t *testing.T, base, path, key, app string, size int, chunked bool) (int, map[string]any) {
	t.Helper()
	addr := strings.TrimPrefix(base, "http://")
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	head := "POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nConnection: close\r\n"
	if key != "" {
		head += "Authorization: Bearer " + key + "\r\n"
	}
	if chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		head += "Content-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		w := bufio.NewWriterSize(nc, 64<<10)
		_, _ = w.WriteString(head)
		chunk := []byte(`{"app":"` + app + `","user":"u","payload":"`)
		chunk = append(chunk, strings.Repeat("x", 64<<10-len(chunk))...)
		for sent := 0; sent < size; sent += len(chunk) {
			var err error
			if chunked {
				_, err = fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk)
			} else {
				_, err = w.Write(chunk)
			}
			if err != nil {
				return
			}
			chunk = []byte(strings.Repeat("x", 64<<10))
		}
		if chunked {
			_, _ = w.WriteString("0\r\n\r\n")
		}
		_ = w.Flush()
	}()
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("POST %s with a %d-byte body: no response: %v", path, size, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	nc.Close() // ends the writer if center left the connection open
	<-wrote
	return resp.StatusCode, out
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

const testSecret = "0123456789abcdef-secret"

// runCLI runs pushctl in-process with env as its whole environment.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	c := cli{stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
	code := c.run(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	if code, _, _ := runCLI(t, nil); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
	if code, _, _ := runCLI(t, nil, "frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
	if code, _, stderr := runCLI(t, nil, "token", "--user", "u"); code != 2 || !strings.Contains(stderr, "--app is required") {
		t.Fatalf("missing --app: exit %d, %q", code, stderr)
	}
	if code, _, _ := runCLI(t, nil, "push", "-h"); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	if code, _, stderr := runCLI(t, map[string]string{"PUSHGW_QOS": "x"}, "push"); code != 2 || !strings.Contains(stderr, "$PUSHGW_QOS") {
		t.Fatalf("bad env value: exit %d, %q", code, stderr)
	}
}

func TestTokenEnvAndFlags(t *testing.T) {
	env := map[string]string{"PUSHGW_APP": "demo", "PUSHGW_APP_SECRET": testSecret, "PUSHGW_DEVICE": "envdev"}
	code, out, stderr := runCLI(t, env, "token", "--user", "alice", "--ttl", "2m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	secretOf := func(app string) ([]byte, bool) { return []byte(testSecret), app == "demo" }
	cl, err := token.Verify(strings.TrimSpace(out), secretOf, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cl.App != "demo" || cl.User != "alice" || cl.Device != "envdev" || time.Until(cl.Expiry) > 2*time.Minute+time.Second {
		t.Fatalf("claims %+v", cl)
	}
	// Flags override the environment.
	_, out, _ = runCLI(t, env, "token", "--user", "bob", "--device", "flagdev", "--secret", "another-secret-of-16")
	if _, err := token.Verify(strings.TrimSpace(out), secretOf, time.Now()); err == nil {
		t.Fatal("token signed with the env secret despite --secret")
	}
	cl, err = token.Verify(strings.TrimSpace(out), func(string) ([]byte, bool) { return []byte("another-secret-of-16"), true }, time.Now())
	if err != nil || cl.Device != "flagdev" || cl.User != "bob" {
		t.Fatalf("%+v %v", cl, err)
	}
}

func TestPushAndStatus(t *testing.T) {
	var gotBody map[string]any
	center := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer key-0123456789abcdef" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"code":"UNAUTHORIZED","message":"unknown API key"}`)
			return
		}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/push":
			json.NewDecoder(r.Body).Decode(&gotBody)
			io.WriteString(w, "{\n  \"id\": \"123456789\", \"qos\": 1}")
		case r.Method == http.MethodGet && r.URL.Path == "/v1/messages/123456789":
			io.WriteString(w, `{"id":"123456789","state":"delivered"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":"NOT_FOUND","message":"no such message"}`)
		}
	}))
	defer center.Close()
	env := map[string]string{"PUSHGW_CENTER_URL": center.URL, "PUSHGW_API_KEY": "key-0123456789abcdef", "PUSHGW_APP": "demo"}

	code, out, stderr := runCLI(t, env, "push", "--user", "alice", "--ttl", "90s", "hello world", "--qos", "0")
	if code != 0 || out != `{"id":"123456789","qos":1}`+"\n" {
		t.Fatalf("push: exit %d out %q err %q", code, out, stderr)
	}
	want := map[string]any{"app": "demo", "user": "alice", "device": "", "payload": "hello world", "qos": 0.0, "ttl": 90.0}
	if fmt.Sprint(gotBody) != fmt.Sprint(want) {
		t.Fatalf("request body %v, want %v", gotBody, want)
	}

	gotBody = nil
	if code, _, stderr := runCLI(t, env, "push", "--user", "alice", "--base64", "/wA="); code != 0 || gotBody["payload_base64"] != "/wA=" || gotBody["payload"] != nil {
		t.Fatalf("push --base64: exit %d err %q body %v", code, stderr, gotBody)
	}

	code, out, _ = runCLI(t, env, "status", "123456789")
	if code != 0 || !strings.Contains(out, `"state":"delivered"`) {
		t.Fatalf("status: exit %d out %q", code, out)
	}
	code, _, stderr = runCLI(t, env, "status", "999")
	if code != 1 || !strings.Contains(stderr, "HTTP 404: NOT_FOUND: no such message") {
		t.Fatalf("status 404: exit %d err %q", code, stderr)
	}
	code, _, stderr = runCLI(t, env, "push", "--user", "alice", "--api-key", "wrong-key-0123456", "x")
	if code != 1 || !strings.Contains(stderr, "HTTP 401: UNAUTHORIZED: unknown API key") {
		t.Fatalf("push 401: exit %d err %q", code, stderr)
	}
	if code, _, _ := runCLI(t, env, "status", "abc"); code != 2 {
		t.Fatalf("status abc: exit %d", code)
	}
}

// fakeRoom is a protocol peer on loopback that verifies the token, pushes
// msgs and records the ids acked.
func fakeRoom(t *testing.T, msgs []*clientpb.Push) (addr string, acked chan uint64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	acked = make(chan uint64, 100)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := protocol.NewReader(bufio.NewReader(conn), 0)
				f, err := r.Read()
				if err != nil {
					return
				}
				m, _ := protocol.DecodeBody(f)
				auth, _ := m.(*clientpb.Auth)
				if auth == nil {
					return
				}
				_, err = token.Verify(auth.Token, func(string) ([]byte, bool) { return []byte(testSecret), true }, time.Now())
				if err != nil {
					conn.Write(protocol.ErrorFrame(nil, f.Seq, protocol.CodeTokenInvalid, err.Error()))
					return
				}
				b, _ := protocol.AppendMessage(nil, protocol.OpAuthReply, f.Seq, &clientpb.AuthReply{SessionId: "s", HeartbeatSeconds: 30})
				for _, p := range msgs {
					b, _ = protocol.AppendMessage(b, protocol.OpPush, 0, p)
				}
				conn.Write(b)
				for {
					f, err := r.Read()
					if err != nil {
						return
					}
					if f.Op == protocol.OpAck {
						m, _ := protocol.DecodeBody(f)
						for _, id := range m.(*clientpb.Ack).Ids {
							acked <- id
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), acked
}

func TestListen(t *testing.T) {
	addr, acked := fakeRoom(t, []*clientpb.Push{
		{Id: 11, App: "demo", Qos: 1, Payload: []byte("héllo")},
		{Id: 12, App: "demo", Qos: 0, Payload: []byte{0xff, 0x00}},
		{Id: 13, App: "demo", Qos: 1, Payload: []byte("not wanted")},
	})
	disp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("app") != "demo" || r.URL.Query().Get("user") != "alice" {
			http.Error(w, "bad query", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, `{"endpoints":[%q]}`, addr)
	}))
	defer disp.Close()
	env := map[string]string{"PUSHGW_DISPATCHER_URL": disp.URL, "PUSHGW_APP": "demo", "PUSHGW_APP_SECRET": testSecret}

	code, out, stderr := runCLI(t, env, "listen", "--user", "alice", "--count", "2", "--timeout", "10s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := `{"id":"11","app":"demo","qos":1,"payload":"héllo"}` + "\n" +
		`{"id":"12","app":"demo","qos":0,"payload_base64":"/wA="}` + "\n"
	if out != want {
		t.Fatalf("output\n%s\nwant\n%s", out, want)
	}
	select {
	case id := <-acked:
		if id != 11 {
			t.Fatalf("acked %d, want 11", id)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("message 11 not acked")
	}
	select {
	case id := <-acked:
		t.Fatalf("acked %d beyond --count or at QoS 0", id)
	case <-time.After(100 * time.Millisecond):
	}

	// Fewer messages than --count by the timeout: exit 1.
	code, out, stderr = runCLI(t, env, "listen", "--user", "alice", "--count", "5", "--timeout", "500ms")
	if code != 1 || !strings.Contains(stderr, "timeout after 500ms: received 3 of 5") || strings.Count(out, "\n") != 3 {
		t.Fatalf("timeout: exit %d out %q err %q", code, out, stderr)
	}

	// A wrong secret is a fatal auth error, reported at once.
	env["PUSHGW_APP_SECRET"] = "wrong-secret-0123456789"
	code, _, stderr = runCLI(t, env, "listen", "--user", "alice", "--timeout", "5s")
	if code != 1 || !strings.Contains(stderr, "TOKEN_INVALID") {
		t.Fatalf("bad token: exit %d err %q", code, stderr)
	}
}

// TestAppPut uses the real etcd (PUSHGW_ETCD or 127.0.0.1:2379) under a
// cluster name of its own.
func TestAppPut(t *testing.T) {
	etcd := "127.0.0.1:2379"
	if v := os.Getenv("PUSHGW_ETCD"); v != "" {
		etcd = v
	}
	cluster := fmt.Sprintf("pushctl-test-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{etcd}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	defer cli.Delete(context.Background(), "/pushgw/"+cluster+"/", clientv3.WithPrefix())

	env := map[string]string{"PUSHGW_ETCD": etcd, "PUSHGW_CLUSTER": cluster}
	code, out, stderr := runCLI(t, env, "app", "put", "--name", "demo", "--secret", testSecret,
		"--api-key", "key-0123456789abcdef", "--webhook", "http://127.0.0.1:9/hook")
	if code != 0 || !strings.Contains(out, "app demo stored in cluster "+cluster) {
		t.Fatalf("exit %d out %q err %q", code, out, stderr)
	}
	if strings.Contains(out+stderr, testSecret) {
		t.Fatal("secret printed")
	}
	resp, err := cli.Get(ctx, appconfig.Prefix(cluster)+"demo")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get: %v %v", resp, err)
	}
	var a appconfig.App
	if err := json.Unmarshal(resp.Kvs[0].Value, &a); err != nil {
		t.Fatal(err)
	}
	if a.Name != "demo" || a.Secret != testSecret || a.APIKey != "key-0123456789abcdef" || a.WebhookURL != "http://127.0.0.1:9/hook" {
		t.Fatalf("stored %+v", a)
	}
	if code, _, stderr := runCLI(t, env, "app", "put", "--name", "demo", "--secret", "short", "--api-key", "key-0123456789abcdef"); code != 2 || !strings.Contains(stderr, "secret") {
		t.Fatalf("short secret: exit %d err %q", code, stderr)
	}
}

func TestEnvFileFallback(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/env.sh"
	content := "# written by make run\nexport PUSHGW_APP=demo\nexport PUSHGW_API_KEY='k123'\nexport PATH=/bin\nPUSHGW_CENTER_URL=http://127.0.0.1:1\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PUSHGW_ENV_FILE": path, "PUSHGW_APP": "from-env"}
	get := withEnvFile(func(k string) string { return env[k] })
	if got := get("PUSHGW_APP"); got != "from-env" {
		t.Fatalf("environment must win over the file, got %q", got)
	}
	if got := get("PUSHGW_API_KEY"); got != "k123" {
		t.Fatalf("PUSHGW_API_KEY = %q", got)
	}
	if got := get("PUSHGW_CENTER_URL"); got != "http://127.0.0.1:1" {
		t.Fatalf("PUSHGW_CENTER_URL = %q", got)
	}
	if got := get("PATH"); got != "" {
		t.Fatalf("non-PUSHGW variables must not be read from the file, got %q", got)
	}
	if got := withEnvFile(func(k string) string { return map[string]string{"PUSHGW_ENV_FILE": dir + "/missing"}[k] })("PUSHGW_APP"); got != "" {
		t.Fatalf("missing file gave %q", got)
	}
}

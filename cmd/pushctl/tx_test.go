package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/pkg/txcheck"
)

func TestTxCommands(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	var body map[string]any
	center := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path)
		if r.Body != nil && r.Method == http.MethodPost && r.URL.Path == "/v1/tx" {
			body = nil
			json.NewDecoder(r.Body).Decode(&body)
		}
		mu.Unlock()
		if r.URL.Path == "/v1/tx/5/commit" {
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"code":"TX_ALREADY_DECIDED","message":"transaction 5 was already decided: rolled_back by api","state":"rolled_back"}`)
			return
		}
		io.WriteString(w, `{"id":"5","state":"prepared"}`)
	}))
	defer center.Close()
	env := map[string]string{"PUSHGW_CENTER_URL": center.URL, "PUSHGW_API_KEY": "key-0123456789abcdef", "PUSHGW_APP": "demo"}

	code, out, stderr := runCLI(t, env, "tx", "prepare", "--users", "a,b", "--check-timeout", "2s", "--key", "order-1", "paid")
	if code != 0 || !strings.Contains(out, `"state":"prepared"`) {
		t.Fatalf("prepare: exit %d out %q err %q", code, out, stderr)
	}
	want := `map[app:demo check_timeout:2 idempotency_key:order-1 payload:paid target:map[kind:users users:[a b]] ttl:60]`
	if fmt.Sprint(body) != want {
		t.Fatalf("prepare body %v, want %s", body, want)
	}
	code, out, stderr = runCLI(t, env, "tx", "prepare", "--broadcast", "--online-only", "--ttl", "30s", "sale")
	if code != 0 || !strings.Contains(out, `"state":"prepared"`) {
		t.Fatalf("prepare --broadcast: exit %d out %q err %q", code, out, stderr)
	}
	want = `map[app:demo online_only:true payload:sale target:map[kind:broadcast] ttl:30]`
	if fmt.Sprint(body) != want {
		t.Fatalf("prepare --broadcast body %v, want %s", body, want)
	}
	if code, _, stderr := runCLI(t, env, "tx", "commit", "5"); code != 1 || !strings.Contains(stderr, "HTTP 409: TX_ALREADY_DECIDED") {
		t.Fatalf("commit: exit %d err %q", code, stderr)
	}
	for _, args := range [][]string{{"tx", "rollback", "5"}, {"tx", "status", "5"}} {
		if code, _, stderr := runCLI(t, env, args...); code != 0 {
			t.Fatalf("%v: exit %d err %q", args, code, stderr)
		}
	}
	mu.Lock()
	got := strings.Join(calls, ", ")
	mu.Unlock()
	if got != "POST /v1/tx, POST /v1/tx, POST /v1/tx/5/commit, POST /v1/tx/5/rollback, GET /v1/tx/5" {
		t.Fatalf("calls: %s", got)
	}
	for _, args := range [][]string{
		{"tx", "prepare", "--user", "a", "--users", "b", "x"},
		{"tx", "prepare", "--user", "a"},
		{"tx", "prepare", "--broadcast", "--users", "b", "x"},
		{"tx", "prepare", "--user", "a", "--online-only", "x"},
		{"tx", "prepare", "--broadcast", "--device", "d", "x"},
		{"tx", "commit", "abc"},
		{"tx", "frob"},
	} {
		if code, _, _ := runCLI(t, env, args...); code != 2 {
			t.Fatalf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestTxServeCheck(t *testing.T) {
	addr := freeport.Addr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	done := make(chan int)
	go func() {
		c := cli{stdout: &syncWriter{w: &out}, stderr: &syncWriter{w: &errb}, getenv: func(string) string { return "" }}
		done <- c.run(ctx, []string{"tx", "serve-check", "--listen", addr, "--secret", testSecret, "--answer", "rollback"})
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve-check exit %d", code)
		}
	}()
	body := []byte(`{"tx_id":"7","app":"demo","target_kind":"user","users":["alice"],"check":1,"max_checks":15}`)
	send := func(secret string, ts time.Time) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/check", bytes.NewReader(body))
		req.Header.Set(txcheck.HeaderTxID, "7")
		req.Header.Set(txcheck.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(txcheck.HeaderSignature, txcheck.Sign(secret, ts.Unix(), body))
		var resp *http.Response
		var err error
		for i := 0; i < 100; i++ { // until the server listens
			if resp, err = http.DefaultClient.Do(req); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := send(testSecret, time.Now()); code != 200 || strings.TrimSpace(b) != `{"decision":"ROLLBACK"}` {
		t.Fatalf("signed check: %d %q", code, b)
	}
	if code, _ := send("another-secret-0123", time.Now()); code != 401 {
		t.Fatalf("badly signed check: %d", code)
	}
	if code, _ := send(testSecret, time.Now().Add(-txcheck.ReplayWindow-time.Minute)); code != 401 {
		t.Fatalf("replayed check: %d", code)
	}
}

// syncWriter lets the server goroutine and the test share a buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testAPIKey = "k-test"

// leanServer is an httptest.Server counting the connections it accepted.
type leanServer struct {
	*httptest.Server
	conns atomic.Int64
}

func newLeanServer(t *testing.T, h http.HandlerFunc) *leanServer {
	t.Helper()
	s := &leanServer{}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// pushHandler answers like center: {"id":"123"} to a well-formed push.
func pushHandler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			App     string `json:"app"`
			User    string `json:"user"`
			Payload string `json:"payload"`
			QoS     *int   `json:"qos"`
			TTL     *int   `json:"ttl"`
		}
		switch {
		case r.Method != http.MethodPost || r.URL.Path != "/v1/push":
			http.Error(w, "want POST /v1/push", http.StatusNotFound)
		case r.Header.Get("Authorization") != "Bearer "+testAPIKey:
			http.Error(w, "bad key", http.StatusUnauthorized)
		case r.Header.Get("Content-Type") != "application/json":
			http.Error(w, "want JSON", http.StatusUnsupportedMediaType)
		case json.NewDecoder(r.Body).Decode(&body) != nil || body.App == "" || body.User == "" ||
			body.Payload == "" || body.QoS == nil || body.TTL == nil:
			http.Error(w, "bad body", http.StatusBadRequest)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"123"}`)
		}
	}
}

func testPushFlags() *pushFlags {
	return &pushFlags{commonFlags: commonFlags{app: "a1", userPrefix: "u"}, apiKey: testAPIKey,
		users: 10, qos: 1, ttl: 600, size: 64, batch: 1, httpClient: httpClientLean}
}

func leanPost(t *testing.T, lc *leanConn, f *pushFlags, k int64) (leanResponse, error) {
	t.Helper()
	t0 := time.Now()
	return lc.post("/v1/push", appendPushBody(nil, f, "0123456789abcdef", k, t0), t0)
}

func newTestLeanConn(t *testing.T, url string) *leanConn {
	t.Helper()
	lc, err := newLeanConn(url, testAPIKey, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lc.close)
	return lc
}

func TestLeanKeepAlive(t *testing.T) {
	srv := newLeanServer(t, pushHandler(t))
	lc := newTestLeanConn(t, srv.URL)
	f := testPushFlags()
	const n = 50
	for k := int64(0); k < n; k++ {
		r, err := leanPost(t, lc, f, k)
		if err != nil {
			t.Fatalf("push %d: %v", k, err)
		}
		if r.status != 200 || r.close || r.body != nil {
			t.Fatalf("push %d: got %+v, want 200 kept alive without a kept body", k, r)
		}
	}
	if got := srv.conns.Load(); got != 1 {
		t.Fatalf("%d pushes took %d connections, want 1", n, got)
	}
}

func TestLeanErrorBodyKept(t *testing.T) {
	var calls atomic.Int64
	ok := pushHandler(t)
	srv := newLeanServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "rate limited: slow down", http.StatusTooManyRequests)
			return
		}
		ok(w, r)
	})
	lc := newTestLeanConn(t, srv.URL)
	f := testPushFlags()
	r, err := leanPost(t, lc, f, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != 429 || r.statusText != "429 Too Many Requests" || strings.TrimSpace(string(r.body)) != "rate limited: slow down" {
		t.Fatalf("got %+v (%q), want 429 with its body", r, r.body)
	}
	if r, err = leanPost(t, lc, f, 1); err != nil || r.status != 200 {
		t.Fatalf("after the 429: %+v, %v", r, err)
	}
	if got := srv.conns.Load(); got != 1 {
		t.Fatalf("a 429 then a 200 took %d connections, want 1 (the error body read to its end)", got)
	}
}

func TestLeanConnectionClose(t *testing.T) {
	ok := pushHandler(t)
	srv := newLeanServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		ok(w, r)
	})
	lc := newTestLeanConn(t, srv.URL)
	f := testPushFlags()
	const n = 5
	for k := int64(0); k < n; k++ {
		r, err := leanPost(t, lc, f, k)
		if err != nil || r.status != 200 || !r.close {
			t.Fatalf("push %d: %+v, %v; want 200 with close", k, r, err)
		}
	}
	if got := srv.conns.Load(); got != n {
		t.Fatalf("%d pushes answered with Connection: close took %d connections, want %d", n, got, n)
	}
}

// TestLeanServerClosesMidStream: a connection dropped before or during an
// answer is a transport error, and the next push dials again.
func TestLeanServerClosesMidStream(t *testing.T) {
	var calls atomic.Int64
	ok := pushHandler(t)
	srv := newLeanServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 2: // no answer at all
			_, _ = io.Copy(io.Discard, r.Body)
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case 4: // half a body
			_, _ = io.Copy(io.Discard, r.Body)
			conn, bw, _ := w.(http.Hijacker).Hijack()
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"id\"")
			_ = bw.Flush()
			conn.Close()
		default:
			ok(w, r)
		}
	})
	lc := newTestLeanConn(t, srv.URL)
	f := testPushFlags()
	var errs []error
	for k := int64(0); k < 5; k++ {
		r, err := leanPost(t, lc, f, k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r.status != 200 {
			t.Fatalf("push %d: %+v", k, r)
		}
	}
	if len(errs) != 2 {
		t.Fatalf("got errors %v, want 2 (pushes 2 and 4)", errs)
	}
	for _, err := range errs {
		if !strings.Contains(err.Error(), "unexpected EOF") {
			t.Errorf("error %q: want unexpected EOF", err)
		}
	}
	if got := srv.conns.Load(); got != 3 {
		t.Fatalf("took %d connections, want 3 (one at start, one after each drop)", got)
	}
}

func TestLeanChunked(t *testing.T) {
	srv := newLeanServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		status := http.StatusOK
		if r.URL.Query().Get("fail") != "" {
			status = http.StatusServiceUnavailable
		}
		w.WriteHeader(status)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush() // forces chunked framing
		}
	})
	lc := newTestLeanConn(t, srv.URL)
	for i := 0; i < 3; i++ {
		r, err := lc.post("/v1/push", []byte("{}"), time.Now())
		if err != nil || r.status != 200 || r.close {
			t.Fatalf("chunked 200: %+v, %v", r, err)
		}
	}
	r, err := lc.post("/v1/push?fail=1", []byte("{}"), time.Now())
	if err != nil || r.status != 503 || string(r.body) != "part0;part1;part2;" {
		t.Fatalf("chunked 503: %+v (%q), %v; want the body joined", r, r.body, err)
	}
	if got := srv.conns.Load(); got != 1 {
		t.Fatalf("chunked answers took %d connections, want 1", got)
	}
}

// TestLeanIdleReconnect: a connection idle past leanIdleMax is replaced
// before the request, not raced against the server's idle timeout.
func TestLeanIdleReconnect(t *testing.T) {
	srv := newLeanServer(t, pushHandler(t))
	lc := newTestLeanConn(t, srv.URL)
	f := testPushFlags()
	if _, err := leanPost(t, lc, f, 0); err != nil {
		t.Fatal(err)
	}
	lc.lastUsed = lc.lastUsed.Add(-leanIdleMax - time.Second)
	if _, err := leanPost(t, lc, f, 1); err != nil {
		t.Fatal(err)
	}
	if got := srv.conns.Load(); got != 2 {
		t.Fatalf("took %d connections, want 2", got)
	}
}

// TestLeanDeadline: a server that never answers fails the request at
// its deadline.
func TestLeanDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(io.Discard, c) // reads, never answers
	}()
	lc, err := newLeanConn("http://"+ln.Addr().String(), testAPIKey, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lc.post("/v1/push", []byte("{}"), time.Now())
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a timeout", err)
	}
	if lc.conn != nil {
		t.Fatal("connection kept after a timeout")
	}
}

// TestSenderLean runs the lean sender's workers like a step does and
// checks the books: outcome keys, accepted, error samples, one
// connection per worker at most.
func TestSenderLean(t *testing.T) {
	var calls atomic.Int64
	ok := pushHandler(t)
	srv := newLeanServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%10 == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		ok(w, r)
	})
	f := testPushFlags()
	f.httpConc, f.rate, f.duration = 4, 400, 250*time.Millisecond
	s := &sender{f: f, center: srv.URL, tr: &tracker{runID: "0123456789abcdef"}, status: &counts{}}
	s.run()
	out := s.status.Snapshot()
	n := s.requests.Load()
	if n < 10 || int64(out["200"]+out["503"]) != n || s.accepted.Load() != int64(out["200"]) || out["503"] != int(n/10) {
		t.Fatalf("requests %d, accepted %d, outcomes %v", n, s.accepted.Load(), out)
	}
	if len(s.errorSamples()) == 0 || s.errorSamples()[0] != "503 Service Unavailable busy" {
		t.Fatalf("error samples %q", s.errorSamples())
	}
	if got := srv.conns.Load(); got > int64(f.httpConc) {
		t.Fatalf("%d connections for %d workers", got, f.httpConc)
	}
	if s.lat.h.Summary().Count != n {
		t.Fatalf("latency count %d, want %d", s.lat.h.Summary().Count, n)
	}
}

// TestSenderTransportError: nothing listening counts transport_error.
func TestSenderTransportError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	f := testPushFlags()
	f.httpConc, f.rate, f.duration = 2, 100, 100*time.Millisecond
	s := &sender{f: f, center: "http://" + addr, tr: &tracker{runID: "0123456789abcdef"}, status: &counts{}}
	s.run()
	out := s.status.Snapshot()
	if n := s.requests.Load(); n == 0 || out["transport_error"] != int(n) || len(out) != 1 || s.accepted.Load() != 0 {
		t.Fatalf("requests %d, outcomes %v", s.requests.Load(), out)
	}
}

// TestPushBodyMatchesMarshal: the appended body is the document the
// net/http path marshals from a map.
func TestPushBodyMatchesMarshal(t *testing.T) {
	t0 := time.Unix(1700000000, 123456789)
	for _, tc := range []struct {
		name  string
		multi bool
		app   string
	}{{"unicast", false, "a1"}, {"multi", true, "a1"}, {"escaped", false, "a\"p\\p\n\u00e9"}} {
		t.Run(tc.name, func(t *testing.T) {
			f := testPushFlags()
			f.multi, f.app, f.userPrefix = tc.multi, tc.app, "pre\"fix-"
			if tc.multi {
				f.batch = 3
			}
			const run = "0123456789abcdef"
			got := appendPushBody([]byte("junk"), f, run, 7, t0)[len("junk"):]
			s := &sender{f: f, tr: &tracker{runID: run}}
			want := map[string]any{"app": f.app, "payload": timedPayload(run, t0, f.size), "qos": f.qos, "ttl": f.ttl}
			if tc.multi {
				want["users"] = []any{s.user(21), s.user(22), s.user(23)}
			} else {
				want["user"] = s.user(7)
			}
			wb, _ := json.Marshal(want)
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("body %s: %v", got, err)
			}
			_ = json.Unmarshal(wb, &w)
			if gs, ws := fmt.Sprint(g), fmt.Sprint(w); gs != ws {
				t.Fatalf("body\n%s\nwant\n%s", got, wb)
			}
		})
	}
}

// TestReadResponseFraming covers framings center does not use today but
// a proxy or a later center might: HTTP/1.0, close-delimited bodies,
// interim answers, trailers; and what the parser refuses.
func TestReadResponseFraming(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		status   int
		close    bool
		body     string
		err      string
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 200, false, "", ""},
		{"bare LF", "HTTP/1.1 404 Not Found\nContent-Length: 2\n\nno", 404, false, "no", ""},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, true, "", ""},
		{"http/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", 200, false, "", ""},
		{"until close", "HTTP/1.1 500 Oops\r\n\r\nall of it", 500, true, "all of it", ""},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, false, "", ""},
		{"no body 204", "HTTP/1.1 204 No Content\r\n\r\n", 204, false, "", ""},
		{"trailers", "HTTP/1.1 502 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n", 502, false, "abc", ""},
		{"close token", "HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n", 200, true, "", ""},
		{"both framings", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false, "", "both"},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 0, false, "", "conflicting"},
		{"gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, false, "", "unsupported"},
		{"huge length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 0, false, "", "too large"},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 0, false, "", "unexpected EOF"},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", 0, false, "", "status code"},
		{"not http", "SSH-2.0-OpenSSH\r\n", 0, false, "", "status line"},
		{"switching", "HTTP/1.1 101 Switching Protocols\r\n\r\n", 0, false, "", "101"},
		{"bad header", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 0, false, "", "malformed header"},
		{"chunk overrun", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n0\r\n\r\n", 0, false, "", "longer than its size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := readResponse(bufio.NewReaderSize(strings.NewReader(tc.in), leanReadBuffer))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want error with %q", r, err, tc.err)
				}
				return
			}
			if err != nil || r.status != tc.status || r.close != tc.close || string(r.body) != tc.body {
				t.Fatalf("got %+v (%q), %v; want status %d close %v body %q", r, r.body, err, tc.status, tc.close, tc.body)
			}
		})
	}
}

// The connect workers' lean lookups ask the dispatcher over one kept-alive
// connection each, get the same room as net/http's client, and report a
// failed answer with its status.
func TestLookupLean(t *testing.T) {
	var fail atomic.Bool
	srv := newLeanServer(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.Method != http.MethodGet || r.URL.Path != "/v1/endpoints" || q.Get("app") != "a1" || q.Get("user") == "":
			http.Error(w, `{"code":"NOT_FOUND"}`, http.StatusNotFound)
		case fail.Load():
			http.Error(w, `{"code":"NO_ROOMS"}`, http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"endpoints":["127.0.0.1:%d","127.0.0.1:1"],"version":7}`, 7000+len(q.Get("user")))
		}
	})
	d := &dialer{dispatcher: srv.URL, httpc: srv.Client(), app: "a1", timeout: 5 * time.Second}
	lc, err := newLeanGetConn(srv.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.close()
	for _, user := range []string{"u", "u&user=x", "user-with-a-long-name"} {
		got, err := d.lookupLean(lc, user)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		want, err := d.lookup(user)
		if err != nil || got != want {
			t.Fatalf("%s: lean %q, net/http %q (%v)", user, got, want, err)
		}
	}
	if n := srv.conns.Load(); n != 2 { // one lean, one net/http
		t.Errorf("%d connections to the dispatcher, want 2", n)
	}
	fail.Store(true)
	if _, err := d.lookupLean(lc, "u"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503 answer: err %v, want one naming the status", err)
	}
	if _, err := lc.post("/v1/push", nil, time.Now()); err == nil {
		t.Error("POST on a GET client succeeded")
	}
}

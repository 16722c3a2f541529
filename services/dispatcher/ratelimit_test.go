package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRateLimitPerIP: over its bucket a client IP gets 429 RATE_LIMITED in
// the dispatcher's error format with a Retry-After; loopback is exempt
// unless asked for.
func TestRateLimitPerIP(t *testing.T) {
	// 0.1/s: no token comes back within the test, however slow the box.
	srv := newServer(prometheus.NewRegistry(), serverOptions{idc: "dc1", ipRate: 0.1, ipBurst: 2, ipMax: 100, limitLoopback: true})
	hs := httptest.NewServer(srv.handler())
	defer hs.Close()
	get := func() *http.Response {
		t.Helper()
		resp, err := http.Get(hs.URL + "/v1/endpoints?app=a&user=u")
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := 0; i < 2; i++ {
		resp := get()
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			t.Fatalf("request %d within the burst limited", i)
		}
	}
	resp := get()
	defer resp.Body.Close()
	var e apiError
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || e.Code != CodeRateLimited || e.Message == "" {
		t.Fatalf("over the burst: %d %+v", resp.StatusCode, e)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 10 {
		t.Fatalf("Retry-After %q, want 1-10 s", resp.Header.Get("Retry-After"))
	}

	// The default leaves loopback alone.
	open := newServer(prometheus.NewRegistry(), serverOptions{idc: "dc1", ipRate: 0.1, ipBurst: 1, ipMax: 100})
	hs2 := httptest.NewServer(open.handler())
	defer hs2.Close()
	for i := 0; i < 5; i++ {
		resp, err := http.Get(hs2.URL + "/v1/endpoints?app=a&user=u")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			t.Fatalf("loopback request %d limited", i)
		}
	}
}

func TestIPLimiterBucketAndBound(t *testing.T) {
	l := newIPLimiter(2, 3, 64)
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("10.0.0.1", now); !ok {
			t.Fatalf("burst request %d refused", i)
		}
	}
	ok, wait := l.allow("10.0.0.1", now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over burst: ok=%v wait=%v, want refused for 500ms", ok, wait)
	}
	if ok, _ := l.allow("10.0.0.2", now); !ok {
		t.Fatal("another IP shares the bucket")
	}
	if ok, _ := l.allow("10.0.0.1", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("token not refilled after 1/rate")
	}
	for i := 0; i < 10000; i++ {
		l.allow(fmt.Sprintf("10.1.%d.%d", i/256, i%256), now)
	}
	if n := l.size(); n > 64 {
		t.Fatalf("%d IPs tracked, bound 64", n)
	}
	if newIPLimiter(0, 1, 1) != nil {
		t.Fatal("rate 0 must turn the limit off")
	}
}

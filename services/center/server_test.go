package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/ants/v2"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/ids"
)

const (
	testKey      = "key-of-app-one-0123456789"
	otherTestKey = "key-of-app-two-0123456789"
)

// testEnv is a center wired to the real etcd under a cluster name of its
// own. Register, saver and room are whatever the test registers in that
// cluster; with none, downstream calls fail fast as Unavailable.
type testEnv struct {
	t       testing.TB
	cli     *clientv3.Client
	cluster string
	srv     *Server
	http    *httptest.Server
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{testEtcd()}, 3*time.Second)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	cluster := fmt.Sprintf("test-center-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer dcancel()
		_, _ = cli.Delete(dctx, "/pushgw/"+cluster+"/", clientv3.WithPrefix())
		cli.Close()
	})
	for _, a := range []appconfig.App{
		{Name: "app1", Secret: "secret-of-app-one-0123", APIKey: testKey},
		{Name: "app2", Secret: "secret-of-app-two-0123", APIKey: otherTestKey},
	} {
		if err := appconfig.Put(ctx, cli, cluster, a); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	apps, err := appconfig.Load(ctx, cli, cluster, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(apps.Close)
	gen, err := ids.NewGenerator(1)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(svc string) *discovery.Watcher {
		w := discovery.Watch(cli, cluster, svc, log)
		t.Cleanup(w.Close)
		if err := w.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		return w
	}
	regConn, err := grpcconn.DialService(dial(discovery.ServiceRegister))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regConn.Close() })
	saverConn, err := grpcconn.DialService(dial(discovery.ServiceSaver))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { saverConn.Close() })
	rooms := newRoomSet()
	rooms.follow(dial(discovery.ServiceRoom))
	t.Cleanup(rooms.close)
	pool, err := ants.NewPool(8, ants.WithNonblocking(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Release)
	srv := newServer(apps, gen, saverConn, regConn, rooms, pool, newMetrics(prometheus.NewRegistry()), log, 3*time.Second)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &testEnv{t: t, cli: cli, cluster: cluster, srv: srv, http: hs}
}

type reply struct {
	status int
	body   map[string]any
}

func (e *testEnv) do(method, path, key, contentType string, body []byte) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		e.t.Fatalf("%s %s: answer is not JSON (%v): %q", method, path, err, raw)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return reply{status: resp.StatusCode, body: m}
}

func (e *testEnv) postJSON(path string, body string) reply {
	e.t.Helper()
	return e.do(http.MethodPost, path, testKey, "application/json", []byte(body))
}

func expectError(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.body["code"] != code {
		t.Fatalf("got %d %v, want %d %s", r.status, r.body, status, code)
	}
	if msg, _ := r.body["message"].(string); msg == "" {
		t.Fatalf("error %s without a message", code)
	}
}

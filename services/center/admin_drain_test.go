package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/discovery"
)

const testAdminKey = "admin-key-for-tests-0123"

// withAdmin serves e's center again, with the admin API on (key; empty:
// off).
func (e *testEnv) withAdmin(key string) {
	e.t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := discovery.Watch(e.cli, e.cluster, discovery.ServiceRoom, log)
	e.t.Cleanup(w.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.WaitReady(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.srv.admin = newAdminAPI(e.srv, key, e.cli, e.cluster, w)
	hs := httptest.NewServer(e.srv.Handler())
	e.t.Cleanup(hs.Close)
	e.http = hs
}

func TestAdminDrainAPI(t *testing.T) {
	e := newTestEnv(t)
	e.withAdmin(testAdminKey)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A stand-in room: registered, and it publishes draining when its
	// mark appears, as services/room does.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := discovery.Register(ctx, e.cli, e.cluster, discovery.Instance{
		Service: discovery.ServiceRoom, ID: "room-x", Addr: "127.0.0.1:1", Endpoints: map[string]string{"tcp": "127.0.0.1:2"}, Load: 7,
	}, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close(context.Background()) })
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() {
		for resp := range e.cli.Watch(wctx, discovery.DrainKey(e.cluster, "room-x")) {
			for _, ev := range resp.Events {
				on := ev.Type == clientv3.EventTypePut
				reg.Update(func(in *discovery.Instance) { in.Draining = on })
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := e.srv.admin.rooms.Get("room-x"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("center never saw the room")
		}
		time.Sleep(20 * time.Millisecond)
	}

	const drain = "/v1/admin/rooms/room-x/drain"
	// Keys: none, wrong, an app's.
	expectError(t, e.do(http.MethodPost, drain, "", "application/json", []byte(`{}`)), 401, CodeUnauthenticated)
	expectError(t, e.do(http.MethodPost, drain, "not-the-admin-key", "application/json", []byte(`{}`)), 401, CodeUnauthenticated)
	expectError(t, e.do(http.MethodPost, drain, testKey, "application/json", []byte(`{}`)), 403, CodeForbidden)
	// Bad input.
	expectError(t, e.do(http.MethodPut, drain, testAdminKey, "application/json", []byte(`{}`)), 405, CodeMethodNotAllowed)
	expectError(t, e.do(http.MethodPost, drain, testAdminKey, "application/json", []byte(`{"rate":-1}`)), 400, CodeInvalidArgument)
	expectError(t, e.do(http.MethodPost, drain, testAdminKey, "application/json", []byte(`{"rate":100001}`)), 400, CodeInvalidArgument)
	expectError(t, e.do(http.MethodPost, drain, testAdminKey, "application/json", []byte(`{"deadline_seconds":86401}`)), 400, CodeInvalidArgument)
	expectError(t, e.do(http.MethodPost, drain, testAdminKey, "application/json", []byte(`{"speed":1}`)), 400, CodeInvalidArgument)
	expectError(t, e.do(http.MethodPost, "/v1/admin/rooms/nope/drain", testAdminKey, "application/json", []byte(`{}`)), 404, CodeNotFound)
	expectError(t, e.do(http.MethodDelete, drain, testAdminKey, "", nil), 404, CodeNotFound)

	r := e.do(http.MethodPost, drain, testAdminKey, "application/json", []byte(`{"rate":25,"deadline_seconds":600}`))
	if r.status != 200 || r.body["id"] != "room-x" || r.body["draining"] != true {
		t.Fatalf("drain: %d %v, want room-x draining", r.status, r.body)
	}
	got, err := e.cli.Get(ctx, discovery.DrainKey(e.cluster, "room-x"))
	if err != nil || len(got.Kvs) != 1 || got.Kvs[0].Lease == 0 {
		t.Fatalf("drain mark: %v %v (want one, under a lease)", got, err)
	}
	var m discovery.DrainMark
	if err := json.Unmarshal(got.Kvs[0].Value, &m); err != nil || m.Rate != 25 || m.DeadlineSec != 600 || m.RequestedMS == 0 {
		t.Fatalf("drain mark %s (%v)", got.Kvs[0].Value, err)
	}
	ttl, err := e.cli.TimeToLive(ctx, clientv3.LeaseID(got.Kvs[0].Lease))
	if err != nil || ttl.TTL <= 600 || ttl.TTL > int64((600*time.Second+drainMarkGrace)/time.Second) {
		t.Fatalf("mark lease TTL %v (%v), want the deadline plus grace", ttl.TTL, err)
	}

	r = e.do(http.MethodGet, "/v1/admin/rooms", testAdminKey, "", nil)
	rooms, _ := r.body["rooms"].([]any)
	if r.status != 200 || len(rooms) != 1 {
		t.Fatalf("rooms: %d %v", r.status, r.body)
	}
	room := rooms[0].(map[string]any)
	if room["id"] != "room-x" || room["draining"] != true || room["load"] != float64(7) || room["drain"].(map[string]any)["rate"] != float64(25) {
		t.Fatalf("rooms lists %v", room)
	}

	r = e.do(http.MethodDelete, drain, testAdminKey, "", nil)
	if r.status != 200 || r.body["id"] != "room-x" {
		t.Fatalf("undrain: %d %v", r.status, r.body)
	}
	if got, err := e.cli.Get(ctx, discovery.DrainKey(e.cluster, "room-x")); err != nil || len(got.Kvs) != 0 {
		t.Fatalf("mark still there after DELETE: %v %v", got, err)
	}
	// A body-less POST takes the room's defaults.
	r = e.do(http.MethodPost, drain, testAdminKey, "", nil)
	if r.status != 200 || r.body["drain"].(map[string]any)["rate"] != nil {
		t.Fatalf("body-less drain: %d %v", r.status, r.body)
	}
}

func TestAdminAPIOffWithoutKey(t *testing.T) {
	e := newTestEnv(t)
	e.withAdmin("")
	expectError(t, e.do(http.MethodGet, "/v1/admin/rooms", "", "", nil), 403, CodeForbidden)
	expectError(t, e.do(http.MethodGet, "/v1/admin/rooms", "anything", "", nil), 403, CodeForbidden)
}

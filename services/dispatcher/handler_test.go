package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/discovery"
)

func TestEndpointsFromEtcd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{testEtcd()}, 3*time.Second)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	defer cli.Close()
	cluster := fmt.Sprintf("test-dispatcher-%d", time.Now().UnixNano())
	defer cli.Delete(context.Background(), "/pushgw/"+cluster+"/", clientv3.WithPrefix())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	w := discovery.Watch(cli, cluster, discovery.ServiceRoom, log)
	defer w.Close()
	if err := w.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	srv := newServer(prometheus.NewRegistry(), serverOptions{idc: "dc1"})
	srv.rooms.follow(w)
	hs := httptest.NewServer(srv.handler())
	defer hs.Close()

	get := func(query string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(hs.URL + "/v1/endpoints?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}

	if st, m := get("app=a&user=u"); st != 503 || m["code"] != CodeNoRooms {
		t.Fatalf("no rooms: %d %v", st, m)
	}
	if st, m := get("user=u"); st != 400 || m["field"] != "app" {
		t.Fatalf("no app: %d %v", st, m)
	}
	if st, m := get("app=a"); st != 400 || m["field"] != "user" {
		t.Fatalf("no user: %d %v", st, m)
	}

	var regs []*discovery.Registration
	defer func() {
		for _, r := range regs {
			_ = r.Close(context.Background())
		}
	}()
	register := func(in discovery.Instance) {
		in.Service = discovery.ServiceRoom
		r, err := discovery.Register(ctx, cli, cluster, in, 0, log)
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, r)
	}
	register(discovery.Instance{ID: "r1", Addr: "127.0.0.1:7301", Endpoints: map[string]string{"tcp": "127.0.0.1:7300"}, IDC: "dc1"})
	register(discovery.Instance{ID: "r2", Addr: "127.0.0.1:7311", Endpoints: map[string]string{"tcp": "127.0.0.1:7310"}, IDC: "dc1"})
	register(discovery.Instance{ID: "r3", Addr: "127.0.0.1:7321", Endpoints: map[string]string{"tcp": "127.0.0.1:7320"}, IDC: "dc1", Draining: true})
	register(discovery.Instance{ID: "r4", Addr: "127.0.0.1:7331"}) // no client endpoint

	deadline := time.Now().Add(5 * time.Second)
	var eps []any
	for {
		st, m := get("app=a&user=u&device=d")
		if st == 200 {
			eps = m["endpoints"].([]any)
			if len(eps) == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rooms never showed up: %d %v", st, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	first := eps[0].(string)
	_, m := get("app=a&user=u&failed=" + url.QueryEscape(first))
	got := m["endpoints"].([]any)
	if got[1] != first || got[0] != eps[1] {
		t.Fatalf("failed endpoint not moved last: %v (was %v)", got, eps)
	}
	resp, err := http.Post(hs.URL+"/v1/endpoints?app=a&user=u", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}

package service

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStartServesAdminEndpoints(t *testing.T) {
	admin := freeAddr(t)
	b, err := Start(context.Background(), "svc", Common{Cluster: "svc-test", Instance: "i1", Etcd: Env("ETCD", DefaultEtcd), AdminAddr: admin, LogLevel: "error"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Not ready before the service serves (a saver still migrating).
	if code, body := get(t, "http://"+admin+"/healthz"); code != 503 || !strings.Contains(body, "starting") {
		t.Fatalf("healthz before Started = %d %q", code, body)
	}
	b.Started()
	if code, body := get(t, "http://"+admin+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("healthz = %d %q", code, body)
	}
	b.AddCheck(func(context.Context) error { return errors.New("mysql down") })
	if code, body := get(t, "http://"+admin+"/healthz"); code != 503 || !strings.Contains(body, "mysql down") {
		t.Fatalf("healthz with failing check = %d %q", code, body)
	}
	if code, body := get(t, "http://"+admin+"/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics = %d", code)
	}
	if code, _ := get(t, "http://"+admin+"/debug/pprof/"); code != 200 {
		t.Fatalf("pprof = %d", code)
	}
	b.SetHealthy(false)
	if code, _ := get(t, "http://"+admin+"/healthz"); code != 503 {
		t.Fatalf("draining healthz = %d", code)
	}
}

func TestStartFailsWithoutEtcd(t *testing.T) {
	start := time.Now()
	_, err := Start(context.Background(), "svc", Common{Etcd: "127.0.0.1:1", AdminAddr: freeAddr(t), LogLevel: "info"})
	if err == nil || !strings.Contains(err.Error(), "cannot start without etcd") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("took %v to give up", d)
	}
}

func TestBadLogLevel(t *testing.T) {
	if _, err := Start(context.Background(), "svc", Common{LogLevel: "loud"}); err == nil {
		t.Fatal("want error for bad log level")
	}
}

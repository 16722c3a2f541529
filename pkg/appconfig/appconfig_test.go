package appconfig

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/pushgw/pushgw/internal/etcdtest"
)

// sharedEtcd is the etcd that scripts/deps.sh starts (PUSHGW_ETCD).
func sharedEtcd() string {
	if v := os.Getenv("PUSHGW_ETCD"); v != "" {
		return v
	}
	return "127.0.0.1:2379"
}

func dial(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// uniqueCluster gives each test its own key space on the shared etcd and
// removes it afterwards.
func uniqueCluster(t *testing.T, cli *clientv3.Client) string {
	cluster := fmt.Sprintf("appconfig-test-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _ = cli.Delete(ctx, "/pushgw/"+cluster+"/", clientv3.WithPrefix())
	})
	return cluster
}

func app(name string) App {
	return App{Name: name, Secret: "secret-of-" + name + "-0123456789", APIKey: "apikey-of-" + name + "-0123456789"}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := app("shop_1.a-b")
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid app: %v", err)
	}
	cases := map[string]func(*App){
		"empty name":    func(a *App) { a.Name = "" },
		"slash in name": func(a *App) { a.Name = "a/b" },
		"long name":     func(a *App) { a.Name = strings.Repeat("a", 65) },
		"short secret":  func(a *App) { a.Secret = "0123456789abcde" },
		"short api key": func(a *App) { a.APIKey = "0123456789abcde" },
	}
	for name, mutate := range cases {
		a := ok
		mutate(&a)
		if err := a.Validate(); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	if !ValidName(strings.Repeat("a", 64)) {
		t.Error("64-byte name rejected")
	}
}

// TestLogValueHidesSecrets guards the promise that an App can be logged.
func TestLogValueHidesSecrets(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	a := app("shop")
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "app", a)
	if strings.Contains(b.String(), a.Secret) || strings.Contains(b.String(), a.APIKey) {
		t.Fatalf("log line leaks a secret: %s", b.String())
	}
}

// TestStoreLookups covers Put, Load and every lookup, including disabled and
// malformed entries, on the real etcd.
func TestStoreLookups(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli := dial(t, sharedEtcd())
	cluster := uniqueCluster(t, cli)
	shop, off := app("shop"), app("off")
	off.Disabled = true
	for _, a := range []App{shop, off} {
		if err := Put(ctx, cli, cluster, a); err != nil {
			t.Fatal(err)
		}
	}
	bad := app("bad")
	bad.Secret = "short"
	if err := Put(ctx, cli, cluster, bad); err == nil {
		t.Fatal("Put accepted an invalid app")
	}
	if _, err := cli.Put(ctx, Prefix(cluster)+"junk", "{not json"); err != nil {
		t.Fatal(err)
	}

	s, err := Load(ctx, cli, cluster, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, ok := s.Get("shop"); !ok || got != shop {
		t.Fatalf("Get(shop) = %+v, %v", got, ok)
	}
	for _, name := range []string{"off", "bad", "junk", "missing"} {
		if _, ok := s.Get(name); ok {
			t.Errorf("Get(%s) found an app", name)
		}
	}
	if sec, ok := s.Secret("shop"); !ok || string(sec) != shop.Secret {
		t.Errorf("Secret(shop) = %q, %v", sec, ok)
	}
	if _, ok := s.Secret("off"); ok {
		t.Error("Secret of a disabled app")
	}
	if got, ok := s.ByAPIKey(shop.APIKey); !ok || got.Name != "shop" {
		t.Errorf("ByAPIKey(shop key) = %+v, %v", got, ok)
	}
	for _, key := range []string{"", off.APIKey, shop.APIKey + "x", shop.Secret} {
		if got, ok := s.ByAPIKey(key); ok {
			t.Errorf("ByAPIKey(%q) = %s", key, got.Name)
		}
	}
	checks := []struct {
		app, key string
		want     bool
	}{
		{"shop", shop.APIKey, true},
		{"shop", "", false},
		{"shop", shop.APIKey[:len(shop.APIKey)-1], false},
		{"shop", off.APIKey, false},
		{"off", off.APIKey, false},
		{"missing", shop.APIKey, false},
	}
	for _, c := range checks {
		if got := s.CheckAPIKey(c.app, c.key); got != c.want {
			t.Errorf("CheckAPIKey(%s, %q) = %v, want %v", c.app, c.key, got, c.want)
		}
	}
	if names := s.Names(); len(names) != 1 || names[0] != "shop" {
		t.Errorf("Names() = %v, want [shop]", names)
	}
}

// TestStoreWatch proves changes apply without reload: a new app, a key
// rotation, disabling and a deletion.
func TestStoreWatch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli := dial(t, sharedEtcd())
	cluster := uniqueCluster(t, cli)
	a, b := app("a"), app("b")
	if err := Put(ctx, cli, cluster, a); err != nil {
		t.Fatal(err)
	}
	s, err := Load(ctx, cli, cluster, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if err := Put(ctx, cli, cluster, b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new app b", func() bool { _, ok := s.ByAPIKey(b.APIKey); return ok })

	rotated := a
	rotated.APIKey = "rotated-key-0123456789"
	if err := Put(ctx, cli, cluster, rotated); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rotated key of a", func() bool { return s.CheckAPIKey("a", rotated.APIKey) })
	if _, ok := s.ByAPIKey(a.APIKey); ok {
		t.Error("old api key of a still accepted after rotation")
	}

	b.Disabled = true
	if err := Put(ctx, cli, cluster, b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b disabled", func() bool { _, ok := s.Get("b"); return !ok })

	if _, err := cli.Delete(ctx, Prefix(cluster)+"a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a deleted", func() bool { _, ok := s.Get("a"); return !ok })
	if _, ok := s.ByAPIKey(rotated.APIKey); ok {
		t.Error("api key of deleted app still accepted")
	}
}

// TestStoreSurvivesOutage proves the store keeps serving its apps while etcd
// is down and picks up changes made after etcd is back.
func TestStoreSurvivesOutage(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := dial(t, srv.Endpoint())
	const cluster = "outage"
	a, b := app("a"), app("b")
	for _, x := range []App{a, b} {
		if err := Put(ctx, cli, cluster, x); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Load(ctx, cli, cluster, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	srv.Kill()
	// The outage as the store's client sees it: its connection to etcd has
	// left READY. A killed single member does not end the watch (the client
	// keeps retrying and resumes it from the last revision), so the
	// connection state, not the watch channel, is what proves the outage.
	waitFor(t, "the etcd connection lost", func() bool {
		return cli.ActiveConnection().GetState() != connectivity.Ready
	})
	gctx, gcancel := context.WithTimeout(ctx, time.Second)
	_, err = cli.Get(gctx, Prefix(cluster), clientv3.WithPrefix(), clientv3.WithSerializable())
	gcancel()
	if err == nil {
		t.Fatal("etcd still answers after Kill")
	}
	names := s.Names()
	sort.Strings(names)
	if len(names) != 2 || names[0] != "a" || names[1] != "b" {
		t.Fatalf("during outage Names() = %v, want [a b]", names)
	}
	if !s.CheckAPIKey("a", a.APIKey) {
		t.Fatal("during outage api key of a rejected")
	}

	srv.Restart()
	c := app("c")
	if err := Put(ctx, cli, cluster, c); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, Prefix(cluster)+"a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c added after restart", func() bool { _, ok := s.ByAPIKey(c.APIKey); return ok })

	waitFor(t, "a deleted after restart", func() bool { _, ok := s.Get("a"); return !ok })
	if _, ok := s.Get("b"); !ok {
		t.Fatal("b lost across the outage")
	}
}

package appconfig

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLimitsValidateAndDefaults(t *testing.T) {
	if err := (Limits{PushRate: -1}).Validate(); err == nil {
		t.Error("negative push_rate accepted")
	}
	if err := (Limits{DeliveriesPerSecond: MaxLimit + 1}).Validate(); err == nil {
		t.Error("deliveries_per_second above MaxLimit accepted")
	}
	l := Limits{PushRate: 10, MultiRate: 100, MultiBurst: 500}
	if got := l.Push(); got != (Rate{10, 10}) {
		t.Errorf("Push() = %+v, want burst defaulting to the rate", got)
	}
	if got := l.Multi(); got != (Rate{100, 500}) {
		t.Errorf("Multi() = %+v", got)
	}
	if got := l.Broadcast(); got.Rate != 0 {
		t.Errorf("Broadcast() = %+v, want unlimited", got)
	}
}

// Concurrent updates of different settings of one app all land: each is
// a compare-and-swap on the key's mod revision, retried on conflict.
func TestUpdateConcurrentEditsAllLand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli := dial(t, sharedEtcd())
	cluster := uniqueCluster(t, cli)
	a := app("a")
	a.WebhookURL = "http://hook.example/a"
	if err := Put(ctx, cli, cluster, a); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	edits := []func(*App){
		func(x *App) { x.PushRate = 11 },
		func(x *App) { x.PushBurst = 22 },
		func(x *App) { x.MultiRate = 33 },
		func(x *App) { x.BroadcastRate = 44 },
		func(x *App) { x.DeliveriesPerSecond = 55 },
	}
	for _, edit := range edits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Update(ctx, cli, cluster, "a", func(x *App) error { edit(x); return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := Update(ctx, cli, cluster, "a", func(*App) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{PushRate: 11, PushBurst: 22, MultiRate: 33, BroadcastRate: 44, DeliveriesPerSecond: 55}
	if got.Limits != want || got.Secret != a.Secret || got.APIKey != a.APIKey || got.WebhookURL != a.WebhookURL {
		t.Fatalf("after concurrent edits: %+v, want limits %+v and the rest unchanged", got, want)
	}
	if _, err := Update(ctx, cli, cluster, "nope", func(*App) error { return nil }); !errors.Is(err, ErrNoApp) {
		t.Fatalf("update of a missing app: %v, want ErrNoApp", err)
	}
	if _, err := Update(ctx, cli, cluster, "a", func(x *App) error { x.PushRate = -5; return nil }); err == nil {
		t.Fatal("invalid update stored")
	}
}

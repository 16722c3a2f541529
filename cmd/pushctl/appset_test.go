package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
)

// app set changes only the settings named on the command line: secrets,
// the webhook and other limits stay, and the environment is not a source
// of settings.
func TestAppSetChangesOnlyNamedSettings(t *testing.T) {
	etcd := "127.0.0.1:2379"
	if v := os.Getenv("PUSHGW_ETCD"); v != "" {
		etcd = v
	}
	cluster := fmt.Sprintf("pushctl-set-test-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{etcd}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	defer cli.Delete(context.Background(), "/pushgw/"+cluster+"/", clientv3.WithPrefix())
	orig := appconfig.App{Name: "demo", Secret: testSecret, APIKey: "key-0123456789abcdef", WebhookURL: "http://127.0.0.1:9/hook",
		Limits: appconfig.Limits{MultiRate: 777}}
	if err := appconfig.Put(ctx, cli, cluster, orig); err != nil {
		t.Fatal(err)
	}
	// $PUSHGW_WEBHOOK_URL is what `make run` exports: it must not leak in.
	env := map[string]string{"PUSHGW_ETCD": etcd, "PUSHGW_CLUSTER": cluster, "PUSHGW_WEBHOOK_URL": "http://elsewhere/", "PUSHGW_PUSH_BURST": "5"}
	code, out, stderr := runCLI(t, env, "app", "set", "--name", "demo", "--push-rate", "100", "--deliveries-per-second", "2000")
	if code != 0 || !strings.Contains(out, "app demo updated") || strings.Contains(out+stderr, testSecret) {
		t.Fatalf("exit %d out %q err %q", code, out, stderr)
	}
	resp, err := cli.Get(ctx, appconfig.Prefix(cluster)+"demo")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get: %v %v", resp, err)
	}
	var a appconfig.App
	if err := json.Unmarshal(resp.Kvs[0].Value, &a); err != nil {
		t.Fatal(err)
	}
	want := orig
	want.PushRate, want.DeliveriesPerSecond = 100, 2000
	if a != want {
		t.Fatalf("stored %+v, want %+v", a, want)
	}
	for _, args := range [][]string{
		{"app", "set", "--name", "demo"},                          // nothing to change
		{"app", "set", "--name", "demo", "--push-rate", "-1"},     // out of range
		{"app", "set", "--name", "demo", "--multi-burst", "lots"}, // not a number
		{"app", "set", "--push-rate", "1"},                        // no app
	} {
		if code, _, stderr := runCLI(t, map[string]string{"PUSHGW_ETCD": etcd, "PUSHGW_CLUSTER": cluster}, args...); code != 2 || stderr == "" {
			t.Errorf("%v: exit %d err %q, want a usage error", args, code, stderr)
		}
	}
	if code, _, stderr := runCLI(t, env, "app", "set", "--name", "nope", "--push-rate", "1"); code != 1 || !strings.Contains(stderr, "no such app") {
		t.Fatalf("missing app: exit %d err %q", code, stderr)
	}
}

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/webhooksig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

const testSecret = "secret-of-the-hook-app"

// setup starts a coordinator over real gRPC, with apps in a fresh etcd
// cluster: "hooked" posts to hook, "nohook" has no webhook.
func setup(t *testing.T, hook http.Handler, lim webhookLimits) internalpb.CoordinatorClient {
	t.Helper()
	c, _ := setupServer(t, hook, lim)
	return c
}

// setupServer is setup that also returns the server, for its metrics.
func setupServer(t *testing.T, hook http.Handler, lim webhookLimits) (internalpb.CoordinatorClient, *server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{testEtcd()}, 3*time.Second)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	cluster := fmt.Sprintf("test-coordinator-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _ = cli.Delete(c, "/pushgw/"+cluster+"/", clientv3.WithPrefix())
		cli.Close()
	})
	hs := httptest.NewServer(hook)
	t.Cleanup(hs.Close)
	for _, a := range []appconfig.App{
		{Name: "hooked", Secret: testSecret, APIKey: "api-key-of-hooked-app", WebhookURL: hs.URL + "/uplink"},
		{Name: "nohook", Secret: "secret-of-nohook-app1", APIKey: "api-key-of-nohook-app"},
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

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv := newServer(apps, lim, newMetrics(prometheus.NewRegistry()), log)
	internalpb.RegisterCoordinatorServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return internalpb.NewCoordinatorClient(cc), srv
}

// limits returns webhook limits for a test: one POST may take attempt, an
// uplink gets attempts POSTs within 2.5 s, and the given concurrency bounds.
func limits(attempt time.Duration, attempts, concurrency, appConcurrency, appQueue int) webhookLimits {
	return webhookLimits{budget: defaultWebhookTimeout, attemptTimeout: attempt, attempts: attempts,
		concurrency: concurrency, appConcurrency: appConcurrency, appQueue: appQueue}
}

func uplink(t *testing.T, c internalpb.CoordinatorClient, app string, payload []byte) *internalpb.UplinkReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Uplink(ctx, &internalpb.UplinkRequest{App: app, User: "alice", Device: "phone", Route: "chat", Payload: payload, SessionId: "s-1"})
	if err != nil {
		t.Fatalf("uplink: %v", err)
	}
	return r
}

func TestUplinkForwardsSignedJSON(t *testing.T) {
	got := make(chan webhookRequest, 1)
	c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get(webhooksig.HeaderTimestamp)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
			webhooksig.Verify(testSecret, ts, r.Header.Get(webhooksig.HeaderSignature), body, time.Now(), webhooksig.DefaultReplayWindow) != nil ||
			r.Header.Get(webhooksig.HeaderApp) != "hooked" {
			http.Error(w, "bad request", 400)
			return
		}
		var req webhookRequest
		_ = json.Unmarshal(body, &req)
		got <- req
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"payload_base64":%q}`, base64.StdEncoding.EncodeToString([]byte("pong")))
	}), limits(2*time.Second, 1, 4, 4, 4))

	r := uplink(t, c, "hooked", []byte("ping\x00\xff"))
	if r.GetCode() != 0 || string(r.GetPayload()) != "pong" {
		t.Fatalf("reply %v", r)
	}
	req := <-got
	p, _ := base64.StdEncoding.DecodeString(req.PayloadBase64)
	if len(req.EventID) != 32 || req.App != "hooked" || req.User != "alice" || req.Device != "phone" || req.Route != "chat" || req.SessionID != "s-1" || string(p) != "ping\x00\xff" {
		t.Fatalf("webhook got %+v", req)
	}
}

func TestUplinkReplies(t *testing.T) {
	mode := make(chan string, 1)
	c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch <-mode {
		case "raw":
			_, _ = w.Write([]byte("plain reply"))
		case "json-without-payload":
			_, _ = w.Write([]byte(`{"ok":true}`))
		case "500":
			http.Error(w, "boom", 500)
		case "slow":
			time.Sleep(700 * time.Millisecond)
		case "huge":
			_, _ = w.Write([]byte(strings.Repeat("x", maxWebhookReply+1)))
		case "bad-base64":
			_, _ = w.Write([]byte(`{"payload_base64":"***"}`))
		case "redirect":
			http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
		}
	}), limits(300*time.Millisecond, 1, 4, 4, 4))

	cases := []struct {
		mode    string
		code    protocol.Code
		payload string
		msg     string
	}{
		{"raw", protocol.CodeOK, "plain reply", ""},
		{"json-without-payload", protocol.CodeOK, `{"ok":true}`, ""},
		{"500", protocol.CodeUplinkFailed, "", "HTTP 500"},
		{"slow", protocol.CodeUplinkFailed, "", "timed out"},
		{"huge", protocol.CodeUplinkFailed, "", "over"},
		{"bad-base64", protocol.CodeUplinkFailed, "", "base64"},
		{"redirect", protocol.CodeUplinkFailed, "", "HTTP 302"},
	}
	for _, tc := range cases {
		mode <- tc.mode
		r := uplink(t, c, "hooked", []byte("x"))
		if protocol.Code(r.GetCode()) != tc.code || string(r.GetPayload()) != tc.payload || !strings.Contains(r.GetMessage(), tc.msg) {
			t.Fatalf("%s: reply code=%d msg=%q payload=%q", tc.mode, r.GetCode(), r.GetMessage(), r.GetPayload())
		}
	}
}

func TestUplinkNoWebhookAndLimits(t *testing.T) {
	c := setup(t, http.NotFoundHandler(), limits(time.Second, 1, 4, 4, 4))
	for _, app := range []string{"nohook", "unknown"} {
		if r := uplink(t, c, app, []byte("x")); protocol.Code(r.GetCode()) != protocol.CodeUplinkNoWebhook {
			t.Fatalf("%s: code %d", app, r.GetCode())
		}
	}
	if r := uplink(t, c, "hooked", make([]byte, maxUplinkPayload+1)); protocol.Code(r.GetCode()) != protocol.CodeUplinkTooLarge {
		t.Fatalf("large payload: code %d", r.GetCode())
	}
}

// TestUplinkSaturated: the limit over all apps answers UNAVAILABLE at once.
func TestUplinkSaturated(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = w.Write([]byte("late"))
	}), limits(2*time.Second, 1, 1, 2, 2))

	first := make(chan *internalpb.UplinkReply, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, _ := c.Uplink(ctx, &internalpb.UplinkRequest{App: "hooked", User: "u", Payload: []byte("1")})
		first <- r
	}()
	<-entered
	if r := uplink(t, c, "hooked", []byte("2")); protocol.Code(r.GetCode()) != protocol.CodeUnavailable {
		t.Fatalf("saturated: code %d", r.GetCode())
	}
	close(release)
	if r := <-first; r.GetCode() != 0 || string(r.GetPayload()) != "late" {
		t.Fatalf("first: %v", r)
	}
	// Capacity is back once the call finished.
	go func() { <-entered }()
	if r := uplink(t, c, "hooked", []byte("3")); r.GetCode() != 0 {
		t.Fatalf("after release: %v", r)
	}
}

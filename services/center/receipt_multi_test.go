package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/apipb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// subscribeReceipts gives app1 a webhook and the receipts subscription and
// waits until center sees it.
func subscribeReceipts(t *testing.T, e *testEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := appconfig.Update(ctx, e.cli, e.cluster, "app1", func(a *appconfig.App) error {
		a.WebhookURL, a.Callbacks.Events = "http://127.0.0.1:9/hook", "receipts"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the receipts subscription to apply", func() bool {
		a, _ := e.srv.apps.Get("app1")
		return a.Subscribes(appconfig.EventReceipts) && a.WebhookURL != ""
	})
}

// Every route refuses a receipt that cannot come with 400 INVALID_ARGUMENT
// on field receipt, before anything is stored: multicasts of an app without
// the subscription or at qos 0, broadcasts and tag broadcasts (stored once,
// not per user), and transactional pushes alike.
func TestReceiptValidationMulti(t *testing.T) {
	e := newTestEnv(t)
	for _, c := range []struct{ path, body, says string }{
		{"/v1/push/multi", `{"users":["a","b"],"payload":"x","receipt":true}`, "does not take receipts"},
		{"/v1/tx", `{"target":{"kind":"users","users":["a","b"]},"payload":"x","receipt":true}`, "does not take receipts"},
		{"/v1/tx", `{"target":{"kind":"user","user":"a"},"payload":"x","receipt":true}`, "does not take receipts"},
	} {
		r := e.postJSON(c.path, c.body)
		expectError(t, r, 400, CodeInvalidArgument)
		if r.body["field"] != "receipt" || !strings.Contains(r.body["message"].(string), c.says) {
			t.Errorf("%s %s: %v; want field receipt saying %q", c.path, c.body, r.body, c.says)
		}
	}
	subscribeReceipts(t, e)
	for _, c := range []struct{ path, body, says string }{
		{"/v1/push/multi", `{"users":["a","b"],"payload":"x","qos":0,"receipt":true}`, "qos 1"},
		{"/v1/broadcast", `{"payload":"x","receipt":true}`, "stored once"},
		{"/v1/broadcast", `{"payload":"x","tag":"vip","receipt":true}`, "stored once"},
		{"/v1/tx", `{"target":{"kind":"broadcast"},"payload":"x","receipt":true}`, "stored once"},
		{"/v1/tx", `{"target":{"kind":"tag","tag":"vip"},"payload":"x","receipt":true}`, "stored once"},
	} {
		r := e.postJSON(c.path, c.body)
		expectError(t, r, 400, CodeInvalidArgument)
		if r.body["field"] != "receipt" || !strings.Contains(r.body["message"].(string), c.says) {
			t.Errorf("%s %s: %v; want field receipt saying %q", c.path, c.body, r.body, c.says)
		}
	}
	// gRPC PushMulti: the same check, as InvalidArgument with the code name.
	g := &grpcAPI{s: e.srv}
	app, _ := e.srv.apps.Get("app1")
	ctx := context.WithValue(context.Background(), appKey{}, app)
	qos0 := uint32(0)
	_, err := g.PushMulti(ctx, &apipb.PushMultiRequest{Users: []string{"a"}, Payload: []byte("x"), Qos: &qos0, Receipt: true})
	if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), CodeInvalidArgument) {
		t.Fatalf("gRPC PushMulti qos 0 with receipt: %v; want InvalidArgument", err)
	}
}

// A multicast with receipt marks every recipient's message: the StoreMulti
// template carries it (saver copies it to each row), over HTTP and gRPC.
func TestReceiptMultiMarksEveryMessage(t *testing.T) {
	e := newTestEnv(t)
	p := &peers{}
	e.serveGRPC(discovery.ServiceRegister, "register-1", func(s *grpc.Server) { internalpb.RegisterRegisterServer(s, p) })
	e.serveGRPC(discovery.ServiceSaver, "saver-1", func(s *grpc.Server) { internalpb.RegisterSaverServer(s, p) })
	subscribeReceipts(t, e)
	waitFor(t, "saver to be discovered", func() bool {
		return e.postJSON("/v1/push/multi", `{"users":["warm"],"payload":"x"}`).status == 200
	})
	stored := func() []*internalpb.Message {
		p.mu.Lock()
		defer p.mu.Unlock()
		return append([]*internalpb.Message(nil), p.stored...)
	}
	before := len(stored())
	r := e.postJSON("/v1/push/multi", `{"users":["a","b","c"],"payload":"x","ttl":60,"receipt":true}`)
	if r.status != 200 {
		t.Fatalf("multicast with receipt: %d %v", r.status, r.body)
	}
	g := &grpcAPI{s: e.srv}
	app, _ := e.srv.apps.Get("app1")
	ctx := context.WithValue(context.Background(), appKey{}, app)
	if _, err := g.PushMulti(ctx, &apipb.PushMultiRequest{Users: []string{"d", "e"}, Payload: []byte("x"), Receipt: true}); err != nil {
		t.Fatalf("gRPC PushMulti with receipt: %v", err)
	}
	// And without: no receipt.
	if r := e.postJSON("/v1/push/multi", `{"users":["f"],"payload":"x"}`); r.status != 200 {
		t.Fatalf("multicast: %d %v", r.status, r.body)
	}
	got := stored()[before:]
	if len(got) != 6 {
		t.Fatalf("stored %d messages, want 6", len(got))
	}
	for _, m := range got {
		if want := m.GetUser() != "f"; m.GetReceipt() != want {
			t.Errorf("user %s: receipt %v, want %v", m.GetUser(), m.GetReceipt(), want)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/pushclient"
	"github.com/pushgw/pushgw/proto/apipb"
)

func dialTestAPI(t *testing.T, e *testEnv, key string) *pushclient.Client {
	t.Helper()
	addr := freeport.Addr(t)
	api, err := startGRPCAPI(e.srv, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.stop(context.Background()) })
	cl, err := pushclient.Dial(addr, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func wantGRPCError(t *testing.T, err error, grpcCode codes.Code, code, field string) *apipb.Error {
	t.Helper()
	pe := pushclient.ErrorOf(err)
	if status.Code(err) != grpcCode || pe == nil || pe.GetCode() != code || pe.GetField() != field ||
		!strings.HasPrefix(status.Convert(err).Message(), code+": ") {
		t.Fatalf("got %v (details %v), want %s with %s on field %q", err, pe, grpcCode, code, field)
	}
	return pe
}

func limited(err error) bool { return pushclient.ErrorOf(err).GetCode() == CodeRateLimited }

// The gRPC API takes from the same per-app buckets as HTTP: Push and each
// PushStream push from the push bucket, PushMulti one per recipient from
// the multi bucket; past them RESOURCE_EXHAUSTED / RATE_LIMITED with the
// wait in the details.
func TestGRPCAPIRateLimited(t *testing.T) {
	e := newTestEnv(t)
	e.srv.useRedis(testRedis(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := appconfig.Update(ctx, e.cli, e.cluster, "app1", func(a *appconfig.App) error {
		a.PushRate, a.MultiRate = 1, 3
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the limits to apply", func() bool { a, _ := e.srv.apps.Get("app1"); return a.PushRate == 1 && a.MultiRate == 3 })
	cl := dialTestAPI(t, e, testKey)
	qos0 := uint32(0)
	push := &apipb.PushRequest{User: "u", Payload: []byte("x"), Qos: &qos0}

	// The burst of 1 admits one push (no room runs here: admitted QoS 0
	// pushes answer UNAVAILABLE from the session lookup, never
	// RATE_LIMITED); the next, within the second, is refused.
	if _, err := cl.Push(ctx, push); limited(err) {
		t.Fatalf("first push of the burst: %v", err)
	}
	_, err := cl.Push(ctx, push)
	if pe := wantGRPCError(t, err, codes.ResourceExhausted, CodeRateLimited, ""); pe.GetRetryAfterS() < 1 {
		t.Fatalf("retry_after_s %d, want >= 1", pe.GetRetryAfterS())
	}
	// A stream's pushes take from the same bucket, each answered alone.
	s, err := cl.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(7, push); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.GetRef() != 7 || r.GetError().GetCode() != CodeRateLimited || r.GetError().GetRetryAfterS() < 1 {
		t.Fatalf("stream push over the limit answered %v, want RATE_LIMITED with retry_after_s", r)
	}
	_ = s.CloseSend()

	// Multicast: a request of more recipients than the burst can never
	// pass (INVALID_ARGUMENT, as HTTP); 3 pass once, then the bucket is empty.
	multi := &apipb.PushMultiRequest{Users: []string{"a", "b", "c", "d"}, Payload: []byte("x"), Qos: &qos0}
	_, err = cl.PushMulti(ctx, multi)
	wantGRPCError(t, err, codes.InvalidArgument, CodeInvalidArgument, "users")
	multi.Users = multi.Users[:3]
	if _, err := cl.PushMulti(ctx, multi); limited(err) {
		t.Fatalf("multicast within the burst: %v", err)
	}
	_, err = cl.PushMulti(ctx, multi)
	wantGRPCError(t, err, codes.ResourceExhausted, CodeRateLimited, "")

	// Another app's bucket is its own.
	if _, err := dialTestAPI(t, e, otherTestKey).Push(ctx, push); limited(err) {
		t.Fatalf("app2 limited by app1's bucket: %v", err)
	}
}

// collapse_key and priority over gRPC: validated as HTTP validates them,
// and a newer push with the same key collapses the waiting one.
func TestGRPCAPICollapseKey(t *testing.T) {
	e, _ := realSaverEnv(t)
	cl := dialTestAPI(t, e, testKey)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	qos0 := uint32(0)
	high, bogus := priorityHigh, "urgent"

	for _, c := range []struct {
		name  string
		req   *apipb.PushRequest
		field string
	}{
		{"key too long", &apipb.PushRequest{User: "u", Payload: []byte("x"), CollapseKey: strings.Repeat("k", maxCollapseKeyBytes+1)}, "collapse_key"},
		{"control character", &apipb.PushRequest{User: "u", Payload: []byte("x"), CollapseKey: "a\x07b"}, "collapse_key"},
		{"key on qos 0", &apipb.PushRequest{User: "u", Payload: []byte("x"), Qos: &qos0, CollapseKey: "k"}, "collapse_key"},
		{"unknown priority", &apipb.PushRequest{User: "u", Payload: []byte("x"), Priority: &bogus}, "priority"},
		{"priority on qos 0", &apipb.PushRequest{User: "u", Payload: []byte("x"), Qos: &qos0, Priority: &high}, "priority"},
	} {
		_, err := cl.Push(ctx, c.req)
		if pushclient.ErrorOf(err).GetField() != c.field {
			t.Errorf("%s: %v, want INVALID_ARGUMENT on %s", c.name, err, c.field)
			continue
		}
		wantGRPCError(t, err, codes.InvalidArgument, CodeInvalidArgument, c.field)
	}
	_, err := cl.PushMulti(ctx, &apipb.PushMultiRequest{Users: []string{"a"}, Payload: []byte("x"), Qos: &qos0, CollapseKey: "k"})
	wantGRPCError(t, err, codes.InvalidArgument, CodeInvalidArgument, "collapse_key")

	user := fmt.Sprint("collapse-", time.Now().UnixNano())
	first, err := cl.Push(ctx, &apipb.PushRequest{User: user, Payload: []byte("score 1:0"), CollapseKey: "score", Priority: &high})
	if err != nil {
		t.Fatal(err)
	}
	second, err := cl.Push(ctx, &apipb.PushRequest{User: user, Payload: []byte("score 2:0"), CollapseKey: "score"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first push to be collapsed by the second", func() bool {
		st, err := cl.Status(ctx, first.GetId())
		return err == nil && st.GetState() == "collapsed"
	})
	if st, err := cl.Status(ctx, second.GetId()); err != nil || st.GetState() != "stored" {
		t.Fatalf("newer push: %v %v, want stored", st, err)
	}

	// A multicast carries the key to each recipient's message.
	m1, err := cl.PushMulti(ctx, &apipb.PushMultiRequest{Users: []string{user + "-a", user + "-b"}, Payload: []byte("v1"), CollapseKey: "ver"})
	if err != nil || m1.GetMulticastId() == 0 || len(m1.GetIds()) != 2 {
		t.Fatalf("multicast: %v %v", m1, err)
	}
	if _, err := cl.Push(ctx, &apipb.PushRequest{User: user + "-a", Payload: []byte("v2"), CollapseKey: "ver"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the multicast copy to be collapsed", func() bool {
		st, err := cl.Status(ctx, m1.GetIds()[user+"-a"])
		return err == nil && st.GetState() == "collapsed"
	})
	if st, err := cl.Status(ctx, m1.GetIds()[user+"-b"]); err != nil || st.GetState() != "stored" {
		t.Fatalf("other recipient's copy: %v %v, want stored", st, err)
	}
}

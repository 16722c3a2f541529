package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/pushclient"
	"github.com/pushgw/pushgw/proto/apipb"
)

func grpcCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialAPI(t *testing.T, c *Cluster, key string) *pushclient.Client {
	t.Helper()
	cl, err := pushclient.Dial(c.CenterGRPC[0], key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// wantAPIError checks a gRPC failure: its status code and the HTTP API's
// code name in both the message and the details.
func wantAPIError(t *testing.T, err error, grpcCode codes.Code, code, field string) {
	t.Helper()
	e := pushclient.ErrorOf(err)
	if status.Code(err) != grpcCode || e == nil || e.GetCode() != code || e.GetField() != field ||
		!strings.HasPrefix(status.Convert(err).Message(), code+": ") || e.GetMessage() == "" {
		t.Fatalf("got %v (details %v), want %s with %s field %q", err, e, grpcCode, code, field)
	}
}

func TestGRPCAPI(t *testing.T) {
	c := StartCluster(t, Options{})
	api := dialAPI(t, c, c.APIKey)
	qos0 := uint32(0)

	t.Run("auth", func(t *testing.T) {
		_, err := dialAPI(t, c, "not-a-key").Push(grpcCtx(t), &apipb.PushRequest{User: "u", Payload: []byte("x")})
		wantAPIError(t, err, codes.Unauthenticated, "UNAUTHENTICATED", "")
		_, err = dialAPI(t, c, c.OtherApp.APIKey).Push(grpcCtx(t), &apipb.PushRequest{App: c.App, User: "u", Payload: []byte("x")})
		wantAPIError(t, err, codes.PermissionDenied, "FORBIDDEN", "app")
		s, err := dialAPI(t, c, "not-a-key").Stream(grpcCtx(t))
		if err == nil {
			_, err = s.Recv()
		}
		wantAPIError(t, err, codes.Unauthenticated, "UNAUTHENTICATED", "")
	})

	t.Run("validation", func(t *testing.T) {
		ctx := grpcCtx(t)
		_, err := api.Push(ctx, &apipb.PushRequest{Payload: []byte("x")})
		wantAPIError(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "user")
		bad := uint32(2)
		_, err = api.Push(ctx, &apipb.PushRequest{User: "u", Payload: []byte("x"), Qos: &bad})
		wantAPIError(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "qos")
		_, err = api.Push(ctx, &apipb.PushRequest{User: "u", Payload: make([]byte, protocol.MaxPayloadSize+1)})
		wantAPIError(t, err, codes.InvalidArgument, "PAYLOAD_TOO_LARGE", "payload")
		_, err = api.Push(ctx, &apipb.PushRequest{User: "u", Payload: []byte("x"), Qos: &qos0, IdempotencyKey: "k"})
		wantAPIError(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "idempotency_key")
		_, err = api.PushMulti(ctx, &apipb.PushMultiRequest{Users: []string{"a", "a"}, Payload: []byte("x")})
		wantAPIError(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "users[1]")
		_, err = api.Status(ctx, 12345)
		wantAPIError(t, err, codes.NotFound, "NOT_FOUND", "")
	})

	t.Run("idempotency and status", func(t *testing.T) {
		ctx := grpcCtx(t)
		req := &apipb.PushRequest{User: "idem-grpc", Payload: []byte("once"), IdempotencyKey: "order-1"}
		first, err := api.Push(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := api.Push(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if first.GetReplayed() || !again.GetReplayed() || again.GetId() != first.GetId() || first.GetQos() != 1 {
			t.Fatalf("first %v, retry %v: want one id, the retry replayed", first, again)
		}
		st, err := api.Status(ctx, first.GetId())
		if err != nil || st.GetId() != first.GetId() || st.GetState() != "stored" {
			t.Fatalf("status %v %v, want stored", st, err)
		}
		if !c.inMySQL(t, first.GetId()) {
			t.Fatalf("message %d not in MySQL", first.GetId())
		}
		multi, err := api.PushMulti(ctx, &apipb.PushMultiRequest{Users: []string{"m1", "m2"}, Payload: []byte("x")})
		if err != nil || len(multi.GetIds()) != 2 || multi.GetIds()["m1"] == 0 {
			t.Fatalf("push multi: %v %v", multi, err)
		}
	})

	t.Run("stream delivers every durable push to the SDK", func(t *testing.T) {
		sdkc := startSDK(t, c, "stream-user", "phone")
		Eventually(t, 20*time.Second, "SDK connected", func() bool { return sdkc.Endpoint() != "" })
		ctx := grpcCtx(t)
		s, err := api.Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// More than the 256 a stream may have in flight, so the bound is
		// reached; ref 0 is an invalid push that must fail alone.
		const n = 600
		sendErr := make(chan error, 1)
		go func() {
			defer close(sendErr)
			if err := s.Send(0, &apipb.PushRequest{Payload: []byte("no user")}); err != nil {
				sendErr <- err
				return
			}
			for ref := uint64(1); ref <= n; ref++ {
				if err := s.Send(ref, &apipb.PushRequest{User: "stream-user", Payload: []byte(fmt.Sprint("m", ref))}); err != nil {
					sendErr <- err
					return
				}
			}
			sendErr <- s.CloseSend()
		}()
		ids := map[uint64]uint64{} // id -> ref
		refs := map[uint64]bool{}
		for {
			r, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("recv after %d replies: %v", len(refs), err)
			}
			if refs[r.GetRef()] {
				t.Fatalf("ref %d answered twice", r.GetRef())
			}
			refs[r.GetRef()] = true
			if r.GetRef() == 0 {
				if r.GetError().GetCode() != "INVALID_ARGUMENT" || r.GetError().GetField() != "user" || r.GetReply() != nil {
					t.Fatalf("invalid push answered %v, want INVALID_ARGUMENT on user", r)
				}
				continue
			}
			if r.GetError() != nil || r.GetReply().GetId() == 0 {
				t.Fatalf("ref %d: %v", r.GetRef(), r)
			}
			ids[r.GetReply().GetId()] = r.GetRef()
		}
		if err := <-sendErr; err != nil {
			t.Fatal(err)
		}
		if len(refs) != n+1 || len(ids) != n {
			t.Fatalf("%d replies with %d distinct ids, want %d and %d", len(refs), len(ids), n+1, n)
		}
		Eventually(t, 30*time.Second, "every streamed push delivered to the SDK", func() bool {
			for id := range ids {
				if sdkc.Count(id) == 0 {
					return false
				}
			}
			return true
		})
		for id, ref := range ids {
			if k := sdkc.Count(id); k != 1 {
				t.Fatalf("push ref %d (id %d) delivered %d times", ref, id, k)
			}
		}
	})

	t.Run("concurrent streams share the store batcher", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := api.Stream(grpcCtx(t))
				if err != nil {
					errs <- err
					return
				}
				for ref := uint64(1); ref <= 50; ref++ {
					if err := s.Send(ref, &apipb.PushRequest{User: fmt.Sprint("cs-", i), Payload: []byte("x")}); err != nil {
						errs <- err
						return
					}
				}
				_ = s.CloseSend()
				for got := 0; ; got++ {
					r, err := s.Recv()
					if errors.Is(err, io.EOF) {
						if got != 50 {
							errs <- fmt.Errorf("stream %d: %d replies, want 50", i, got)
						}
						return
					}
					if err != nil || r.GetError() != nil {
						errs <- fmt.Errorf("stream %d: %v %v", i, r, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("pushctl push --grpc", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(c.binDir, "pushctl"), "push", "--app", c.App, "--user", "ctl-grpc",
			"--grpc", c.CenterGRPC[0], "hello over grpc")
		cmd.Env = append(os.Environ(), "PUSHGW_API_KEY="+c.APIKey)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pushctl push --grpc: %v\n%s", err, out)
		}
		var got struct {
			ID  string `json:"id"`
			QoS int    `json:"qos"`
		}
		if err := json.Unmarshal(out, &got); err != nil || got.QoS != 1 {
			t.Fatalf("pushctl printed %q", out)
		}
		id, err := strconv.ParseUint(got.ID, 10, 64)
		if err != nil || !c.inMySQL(t, id) {
			t.Fatalf("pushctl's message %q not stored (%v)", got.ID, err)
		}
		cmd = exec.Command(filepath.Join(c.binDir, "pushctl"), "push", "--app", c.App, "--user", "ctl-grpc",
			"--grpc", c.CenterGRPC[0], "--api-key", "wrong-key", "x")
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "UNAUTHENTICATED") {
			t.Fatalf("pushctl with a wrong key: %v %s, want an UNAUTHENTICATED error", err, out)
		}
	})

	t.Run("collapse key", func(t *testing.T) {
		ctx := grpcCtx(t)
		_, err := api.Push(ctx, &apipb.PushRequest{User: "u", Payload: []byte("x"), Qos: &qos0, CollapseKey: "k"})
		wantAPIError(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "collapse_key")
		bogus := "urgent"
		_, err = api.Push(ctx, &apipb.PushRequest{User: "u", Payload: []byte("x"), Priority: &bogus})
		wantAPIError(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "priority")
		first, err := api.Push(ctx, &apipb.PushRequest{User: "collapse-grpc", Payload: []byte("1:0"), CollapseKey: "score"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := api.Push(ctx, &apipb.PushRequest{User: "collapse-grpc", Payload: []byte("2:0"), CollapseKey: "score"}); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 10*time.Second, "the older push collapsed", func() bool {
			st, err := api.Status(ctx, first.GetId())
			return err == nil && st.GetState() == "collapsed"
		})
	})

	// Last: the limit stays on the app for the rest of the cluster's life.
	t.Run("rate limit", func(t *testing.T) {
		c.SetApp(func(a *appconfig.App) { a.PushRate, a.PushBurst = 1, 1 })
		Eventually(t, 10*time.Second, "RESOURCE_EXHAUSTED past the app's push limit", func() bool {
			_, err := api.Push(grpcCtx(t), &apipb.PushRequest{User: "limited", Payload: []byte("x")})
			return status.Code(err) == codes.ResourceExhausted
		})
		_, err := api.Push(grpcCtx(t), &apipb.PushRequest{User: "limited", Payload: []byte("x")})
		wantAPIError(t, err, codes.ResourceExhausted, "RATE_LIMITED", "")
		if pushclient.ErrorOf(err).GetRetryAfterS() < 1 {
			t.Fatalf("no retry_after_s in %v", pushclient.ErrorOf(err))
		}
	})
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// realSaverEnv is a center whose saver is the real one.
func realSaverEnv(t testing.TB) (*testEnv, string) {
	t.Helper()
	e := newTestEnv(t)
	_, dsn := startRealSaver(t, e.cluster)
	// Discovery reaches center a moment after saver registers.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, err := postPush(e, `{"user":"probe","payload":"probe"}`)
		if err == nil && code == http.StatusOK {
			return e, dsn
		}
		if time.Now().After(deadline) {
			t.Fatalf("center never stored through the real saver: %d %v", code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postPush is safe from any goroutine.
func postPush(e *testEnv, body string) (int, map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, e.http.URL+"/v1/push", bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("answer is not JSON: %w", err)
	}
	return resp.StatusCode, m, nil
}

func histogram(t *testing.T, e *testEnv) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := e.srv.m.storeBatch.batch.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

func savedState(t *testing.T, e *testEnv, id uint64) internalpb.MessageState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := e.srv.saver.Status(ctx, &internalpb.StatusRequest{App: "app1", Id: id})
	if err != nil {
		t.Fatalf("status %d: %v", id, err)
	}
	if !rep.GetFound() {
		return internalpb.MessageState_MESSAGE_STATE_UNSPECIFIED
	}
	return rep.GetMessage().GetState()
}

// Many concurrent unicast QoS 1 pushes share Saver.Store calls, and each
// is answered with its own id, stored once; two pushes racing with one
// idempotency key get one id between them.
func TestStoreBatcherConcurrentPushes(t *testing.T) {
	e, _ := realSaverEnv(t)
	calls0, msgs0 := histogram(t, e)
	const n = 300
	type answer struct {
		code int
		body map[string]any
		err  error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"user":"user-%d","payload":"p-%d"}`, i, i)
			if i%10 < 2 { // pairs i, i+1 share a key
				body = fmt.Sprintf(`{"user":"user-%d","payload":"p-%d","idempotency_key":"key-%d"}`, i, i, i/10)
			}
			code, m, err := postPush(e, body)
			answers[i] = answer{code, m, err}
		}()
	}
	wg.Wait()
	ids := map[uint64]int{}
	for i, a := range answers {
		if a.err != nil || a.code != http.StatusOK {
			t.Fatalf("push %d: %d %v %v", i, a.code, a.body, a.err)
		}
		id, err := strconv.ParseUint(a.body["id"].(string), 10, 64)
		if err != nil {
			t.Fatalf("push %d: id %v", i, a.body["id"])
		}
		ids[id]++
	}
	for i := 0; i < n; i += 10 {
		a, b := answers[i].body, answers[i+1].body
		if a["id"] != b["id"] || (a["replayed"] == true) == (b["replayed"] == true) {
			t.Errorf("key-%d: answers %v and %v, want one id, one of them replayed", i/10, a, b)
		}
	}
	if want := n - n/10; len(ids) != want {
		t.Fatalf("%d distinct ids, want %d", len(ids), want)
	}
	for id := range ids {
		if st := savedState(t, e, id); st != internalpb.MessageState_MESSAGE_STATE_STORED {
			t.Fatalf("message %d: state %v, want stored", id, st)
		}
	}
	calls, msgs := histogram(t, e)
	calls, msgs = calls-calls0, msgs-msgs0
	if msgs != n {
		t.Fatalf("%v messages went through the batcher, want %d", msgs, n)
	}
	if calls >= n {
		t.Fatalf("%d Store calls for %d concurrent pushes: nothing was batched", calls, n)
	}
	t.Logf("%d pushes in %d Store calls", n, calls)
}

// A message saver rejects fails only its own request: its batch-mates are
// stored and answered OK.
func TestStoreBatcherBadMessageInBatch(t *testing.T) {
	e, _ := realSaverEnv(t)
	d := delivery{payload: []byte("hello"), qos: 1, ttl: time.Hour}
	const mates = 30
	for try := 1; try <= 20; try++ {
		users := make([]string, mates+1)
		for i := range users {
			users[i] = fmt.Sprintf("try%d-user%d", try, i)
		}
		msgs, ae := e.srv.newMessages("app1", users, "", d)
		if ae != nil {
			t.Fatal(ae)
		}
		bad := msgs[mates]
		bad.User = "" // saver refuses a message without a user
		outs := make([]storeOutcome, len(msgs))
		var wg sync.WaitGroup
		for i, m := range msgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				outs[i] = e.srv.stores.submit(ctx, m)
			}()
		}
		wg.Wait()
		var ae2 *apiError
		if !errors.As(outs[mates].err, &ae2) || ae2.Code != CodeInvalidArgument {
			t.Fatalf("bad message: %v, want %s", outs[mates].err, CodeInvalidArgument)
		}
		if savedState(t, e, bad.GetId()) != internalpb.MessageState_MESSAGE_STATE_UNSPECIFIED {
			t.Fatalf("bad message %d was stored", bad.GetId())
		}
		for i, m := range msgs[:mates] {
			if outs[i].err != nil {
				t.Fatalf("batch-mate %d: %v", i, outs[i].err)
			}
			if st := savedState(t, e, m.GetId()); st != internalpb.MessageState_MESSAGE_STATE_STORED {
				t.Fatalf("batch-mate %d: state %v, want stored", i, st)
			}
		}
		if outs[mates].batch > 1 {
			t.Logf("try %d: the bad message shared a Store call of %d", try, outs[mates].batch)
			return
		}
	}
	t.Fatal("the bad message never shared a Store call with others in 20 tries")
}

// When saver stalls (here: a row lock on an idempotency key, held by the
// test's own MySQL transaction) every Store call of the batcher stays in
// flight, its queue fills, and a push is refused at once with 503
// UNAVAILABLE instead of queueing without bound. Once the lock goes,
// pushes are stored again.
func TestStoreBatcherQueueFull(t *testing.T) {
	e, dsn := realSaverEnv(t)
	release := stallSaver(t, e, dsn)
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	b := e.srv.stores
	rejected0 := counterValue(e.srv.m.storeBatch.rejected)
	d := delivery{payload: []byte("x"), qos: 1, ttl: time.Hour}
	var wg sync.WaitGroup
	var fillersRejected atomic.Int64
	submit := func(user string) {
		msgs, ae := e.srv.newMessages("app1", []string{user}, "", d)
		if ae != nil {
			t.Error(ae)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer scancel()
			if out := b.submit(sctx, msgs[0]); errors.Is(out.err, errStoreQueueFull) {
				fillersRejected.Add(1)
			}
		}()
	}
	// Fill the queue (the collector holds one more batch, waiting for a call).
	for i := 0; i < storeBatchQueue+storeBatchMax; i++ {
		submit(fmt.Sprint("queued-", i))
	}
	waitFor(t, "the store queue to fill", func() bool { return len(b.queue) == cap(b.queue) })
	code, body, err := postPush(e, `{"user":"one-too-many","payload":"x"}`)
	if err != nil || code != http.StatusServiceUnavailable || body["code"] != CodeUnavailable ||
		!strings.Contains(fmt.Sprint(body["message"]), "nothing was accepted") {
		t.Fatalf("push with a full queue: %d %v %v, want 503 %s saying nothing was accepted", code, body, err, CodeUnavailable)
	}
	release()
	released = true
	wg.Wait()
	if got, want := counterValue(e.srv.m.storeBatch.rejected)-rejected0, float64(fillersRejected.Load()+1); got != want {
		t.Fatalf("queue-full counter rose by %v, want %v", got, want)
	}
	if code, body, err := postPush(e, `{"user":"after","payload":"x"}`); err != nil || code != http.StatusOK {
		t.Fatalf("push after saver resumed: %d %v %v", code, body, err)
	}
}

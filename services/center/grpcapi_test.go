package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/pkg/pushclient"
	"github.com/pushgw/pushgw/proto/apipb"
)

// stallSaver holds a MySQL row lock on idempotency key "held" of app1 and
// sends pushes with that key until every Store call of the batcher hangs
// on it: the real saver stalls as under a slow disk. release lifts the
// lock and waits for those pushes.
func stallSaver(t *testing.T, e *testEnv, dsn string) (release func()) {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO idempotency_keys (app, ikey, id, created_ms) VALUES ('app1', 'held', 1, 0)"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	d := delivery{payload: []byte("x"), qos: 1, ttl: time.Hour}
	for i := 0; e.srv.stores.inFlight.Load() < storeBatchFlights; i++ {
		if i > 100*storeBatchFlights {
			t.Fatalf("only %d of %d Store calls in flight", e.srv.stores.inFlight.Load(), storeBatchFlights)
		}
		msgs, ae := e.srv.newMessages("app1", []string{fmt.Sprint("held-", i)}, "", d)
		if ae != nil {
			t.Fatal(ae)
		}
		msgs[0].IdempotencyKey = "held"
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			e.srv.stores.submit(ctx, msgs[0])
		}()
		time.Sleep(10 * time.Millisecond) // paces submissions; the loop condition is the real wait
	}
	return func() {
		_ = tx.Rollback()
		wg.Wait()
	}
}

func gaugeValue(t *testing.T, e *testEnv) float64 {
	t.Helper()
	var m dto.Metric
	if err := e.srv.m.storeBatch.streamInFlight.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// A stream whose pushes cannot be stored stops being read at
// streamMaxInFlight pushes; once saver resumes every push is answered.
func TestPushStreamBackPressure(t *testing.T) {
	e, dsn := realSaverEnv(t)
	addr := freeport.Addr(t)
	api, err := startGRPCAPI(e.srv, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.stop(context.Background()) })
	cl, err := pushclient.Dial(addr, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	release := stallSaver(t, e, dsn)
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := cl.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = streamMaxInFlight + 100
	for ref := uint64(1); ref <= n; ref++ {
		if err := s.Send(ref, &apipb.PushRequest{User: fmt.Sprint("bp-", ref), Payload: []byte("x")}); err != nil {
			t.Fatalf("send %d: %v", ref, err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	// All n are sent (small enough for the HTTP/2 windows); center takes
	// only streamMaxInFlight of them while none can be answered.
	waitFor(t, "the stream's in-flight bound to be reached", func() bool { return gaugeValue(t, e) >= streamMaxInFlight })
	for i := 0; i < 10; i++ {
		if v := gaugeValue(t, e); v != streamMaxInFlight {
			t.Fatalf("%v pushes in flight on one stream, want %d", v, streamMaxInFlight)
		}
	}
	release()
	released = true
	got := map[uint64]bool{}
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("recv after %d: %v", len(got), err)
		}
		if r.GetError() != nil || r.GetReply().GetId() == 0 {
			t.Fatalf("ref %d: %v", r.GetRef(), r)
		}
		got[r.GetRef()] = true
	}
	if len(got) != n {
		t.Fatalf("%d replies, want %d", len(got), n)
	}
	if v := gaugeValue(t, e); v != 0 {
		t.Fatalf("in-flight gauge %v after the stream ended, want 0", v)
	}
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/webhooksig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// hookCall is one POST the test webhook received.
type hookCall struct {
	eventHeader, eventBody string
	sigErr                 error
}

// recorder is a webhook that answers the statuses in script one per call
// (the last one for every call after), records each call, and counts the
// uplinks it processed (answered 2xx).
type recorder struct {
	mu        sync.Mutex
	script    []int
	calls     []hookCall
	processed int
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var in webhookRequest
	_ = json.Unmarshal(body, &in)
	c := hookCall{
		eventHeader: r.Header.Get(webhooksig.HeaderEventID), eventBody: in.EventID,
		sigErr: webhooksig.Verify(testSecret, r.Header.Get(webhooksig.HeaderTimestamp), r.Header.Get(webhooksig.HeaderSignature), body, time.Now(), webhooksig.DefaultReplayWindow),
	}
	rc.mu.Lock()
	n := len(rc.calls)
	rc.calls = append(rc.calls, c)
	status := rc.script[min(n, len(rc.script)-1)]
	if status/100 == 2 {
		rc.processed++
	}
	rc.mu.Unlock()
	if status/100 != 2 {
		http.Error(w, "not now", status)
		return
	}
	_, _ = w.Write([]byte("reply-to-" + in.EventID))
}

func (rc *recorder) snapshot() ([]hookCall, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookCall(nil), rc.calls...), rc.processed
}

func TestUplinkRetriedAfter500sIsDeliveredOnce(t *testing.T) {
	rc := &recorder{script: []int{500, 503, 200}}
	c := setup(t, rc, limits(time.Second, 4, 4, 4, 4))
	r := uplink(t, c, "hooked", []byte("x"))
	calls, processed := rc.snapshot()
	if len(calls) != 3 || processed != 1 {
		t.Fatalf("webhook saw %d calls, processed %d; want 3 and 1", len(calls), processed)
	}
	id := calls[0].eventBody
	for i, c := range calls {
		if c.sigErr != nil || c.eventBody != id || c.eventHeader != id || len(id) != 32 {
			t.Fatalf("call %d: event %q/%q (first %q), signature: %v", i, c.eventHeader, c.eventBody, id, c.sigErr)
		}
	}
	if r.GetCode() != 0 || string(r.GetPayload()) != "reply-to-"+id {
		t.Fatalf("reply %v, want OK with the webhook's answer", r)
	}
	// A second uplink is a new event.
	rc.mu.Lock()
	rc.script = []int{200}
	rc.mu.Unlock()
	uplink(t, c, "hooked", []byte("y"))
	calls, _ = rc.snapshot()
	if calls[3].eventBody == id {
		t.Fatalf("two uplinks share event id %s", id)
	}
}

func TestUplinkNotRetriedOn4xx(t *testing.T) {
	rc := &recorder{script: []int{400, 200}}
	c := setup(t, rc, limits(time.Second, 4, 4, 4, 4))
	r := uplink(t, c, "hooked", []byte("x"))
	if calls, _ := rc.snapshot(); len(calls) != 1 {
		t.Fatalf("a 400 was retried: %d calls", len(calls))
	}
	if protocol.Code(r.GetCode()) != protocol.CodeUplinkFailed || !strings.Contains(r.GetMessage(), "HTTP 400 (1 attempts)") {
		t.Fatalf("reply %v", r)
	}
}

func TestUplinkGivesUpAtAttempts(t *testing.T) {
	rc := &recorder{script: []int{502}}
	c := setup(t, rc, limits(time.Second, 3, 4, 4, 4))
	r := uplink(t, c, "hooked", []byte("x"))
	if calls, _ := rc.snapshot(); len(calls) != 3 {
		t.Fatalf("%d calls, want 3 (-webhook-attempts)", len(calls))
	}
	if protocol.Code(r.GetCode()) != protocol.CodeUplinkFailed || !strings.Contains(r.GetMessage(), "HTTP 502 (3 attempts)") {
		t.Fatalf("reply %v", r)
	}
}

// A webhook that hangs: attempts time out and are retried, and the reply
// still reaches the caller before the caller's own deadline (the room's
// call deadline), as UPLINK_FAILED rather than a gRPC deadline error.
func TestUplinkTimeoutsRetriedWithinCallerDeadline(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	stop := make(chan struct{})
	c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}), limits(250*time.Millisecond, 10, 4, 4, 4))
	defer close(stop)

	const callerDeadline = 1200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), callerDeadline)
	defer cancel()
	r, err := c.Uplink(ctx, &internalpb.UplinkRequest{App: "hooked", User: "u", Payload: []byte("x")})
	if err != nil {
		t.Fatalf("uplink: %v (the coordinator must answer inside the caller's deadline)", err)
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	if protocol.Code(r.GetCode()) != protocol.CodeUplinkFailed || !strings.Contains(r.GetMessage(), "timed out") || n < 2 {
		t.Fatalf("reply %v after %d calls; want UPLINK_FAILED, timed out, at least 2 calls", r, n)
	}
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	for n := 1; n <= 8; n++ {
		want := min(retryBaseDelay<<(n-1), retryMaxDelay)
		for range 50 {
			if d := backoff(n); d < want/2 || d >= want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v)", n, d, want/2, want)
			}
		}
	}
}

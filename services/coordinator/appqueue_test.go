package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// One app with a stuck webhook: 1 call in flight, 1 waiting, the third
// uplink answered UPLINK_QUEUE_FULL at once; the held ones complete in order
// once the webhook answers.
func TestUplinkAppQueueBounded(t *testing.T) {
	entered := make(chan string, 4)
	release := make(chan struct{})
	c, srv := setupServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- r.Header.Get("X-Pushgw-Event-Id")
		<-release
		_, _ = w.Write([]byte("done"))
	}), limits(2*time.Second, 1, 16, 1, 1))

	replies := make(chan *internalpb.UplinkReply, 2)
	send := func(p string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		r, err := c.Uplink(ctx, &internalpb.UplinkRequest{App: "hooked", User: "u", Payload: []byte(p)})
		if err != nil {
			r = &internalpb.UplinkReply{Code: 1, Message: err.Error()}
		}
		replies <- r
	}
	go send("in-flight")
	<-entered
	go send("queued")
	waitFor(t, "one uplink queued", func() bool { return gaugeValue(srv.m.queued) == 1 })

	r := uplink(t, c, "hooked", []byte("overflow"))
	if protocol.Code(r.GetCode()) != protocol.CodeUplinkQueueFull || !strings.Contains(r.GetMessage(), "queue is full") {
		t.Fatalf("overflow: %v, want UPLINK_QUEUE_FULL", r)
	}
	close(release)
	for range 2 {
		if r := <-replies; r.GetCode() != 0 || string(r.GetPayload()) != "done" {
			t.Fatalf("held uplink: %v", r)
		}
	}
	if len(entered) != 1 {
		t.Fatalf("webhook saw %d more calls, want 1 (the queued one)", len(entered))
	}
}

// A waiting uplink gives up when its budget ends rather than waiting on.
func TestUplinkQueueWaitBoundedByDeadline(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}), limits(2*time.Second, 1, 16, 1, 4))
	defer close(release)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _ = c.Uplink(ctx, &internalpb.UplinkRequest{App: "hooked", User: "u"})
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	r, err := c.Uplink(ctx, &internalpb.UplinkRequest{App: "hooked", User: "u"})
	if err != nil || protocol.Code(r.GetCode()) != protocol.CodeUplinkFailed || !strings.Contains(r.GetMessage(), "no slot") {
		t.Fatalf("queued past its deadline: %v, %v", r, err)
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	_ = g.Write(&m)
	return m.GetGauge().GetValue()
}

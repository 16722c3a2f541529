package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// settleLog records the settlements a delivery sends to saver. Saver's
// own side (MySQL, lease order) is tested in services/saver/events_test.go;
// this checks what the coordinator decides.
type settleLog struct {
	internalpb.SaverEventsClient
	mu  sync.Mutex
	got []*internalpb.FinishEventsRequest
}

func (s *settleLog) FinishEvents(_ context.Context, r *internalpb.FinishEventsRequest, _ ...grpc.CallOption) (*internalpb.FinishEventsReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, r)
	return &internalpb.FinishEventsReply{}, nil
}

func eventApps(t *testing.T, url string, batch int) *appconfig.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{testEtcd()}, 3*time.Second)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	cluster := fmt.Sprintf("test-coordinator-events-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _ = cli.Delete(c, "/pushgw/"+cluster+"/", clientv3.WithPrefix())
		cli.Close()
	})
	a := appconfig.App{Name: "evapp", Secret: testSecret, APIKey: "api-key-of-evapp-app", WebhookURL: url,
		Callbacks: appconfig.Callbacks{Events: "online,offline,receipts", WebhookBatch: batch}}
	if err := appconfig.Put(ctx, cli, cluster, a); err != nil {
		t.Fatal(err)
	}
	apps, err := appconfig.Load(ctx, cli, cluster, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(apps.Close)
	return apps
}

func testEvent(seq uint64, user string, kind internalpb.EventKind) *internalpb.Event {
	return &internalpb.Event{Seq: seq, Kind: kind, App: "evapp", User: user, Device: "d", AtMs: time.Now().UnixMilli()}
}

// A failed POST ends its user's chain: the failed event is scheduled again,
// the user's later events released, never posted out of order; another
// user's chain goes on until the app is marked down, then is deferred.
func TestEventDeliveryKeepsUserOrder(t *testing.T) {
	for _, batch := range []int{0, 10} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			var mu sync.Mutex
			var posted []string
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				var one struct {
					EventID string `json:"event_id"`
				}
				var many struct {
					Events []struct {
						EventID string `json:"event_id"`
					} `json:"events"`
				}
				_ = json.Unmarshal(body, &one)
				_ = json.Unmarshal(body, &many)
				ids := []string{one.EventID}
				if batch > 1 {
					ids = nil
					for _, e := range many.Events {
						ids = append(ids, e.EventID)
					}
				}
				mu.Lock()
				posted = append(posted, ids...)
				mu.Unlock()
				if slices.Contains(ids, "ev-2") {
					http.Error(w, "no", http.StatusInternalServerError)
				}
			}))
			defer hook.Close()
			apps := eventApps(t, hook.URL, batch)
			saver := &settleLog{}
			lim := eventLimits{poll: time.Second, lease: 30 * time.Second, batch: 100, appQueue: 100, workers: 1,
				retryBase: time.Second, retryMax: 10 * time.Second, maxAge: time.Hour}
			d := newEventDelivery(saver, apps, newWebhookClient(time.Second, 4), lim, newEventMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
			on, off := internalpb.EventKind_EVENT_KIND_ONLINE, internalpb.EventKind_EVENT_KIND_OFFLINE
			evs := []*internalpb.Event{testEvent(1, "ann", on), testEvent(2, "ann", off), testEvent(3, "ann", on), testEvent(4, "bob", on)}
			if batch > 1 {
				evs = evs[1:] // ann's chain starts at the failing event
			}
			until := time.Now().Add(lim.lease)
			chains := chainsOf(7, until, evs)
			app, ok := apps.Get("evapp")
			q := &appEvents{ch: make(chan *chain, 10)}
			d.deliver(context.Background(), app, ok, q, chains)

			// ev-3 may only travel in the same (failing) POST as ev-2.
			if i := slices.Index(posted, "ev-3"); i >= 0 && (batch <= 1 || i < slices.Index(posted, "ev-2")) {
				t.Fatalf("ev-3 posted apart from ev-2, which failed: %v", posted)
			}
			var delivered, released []uint64
			var failed []*internalpb.EventRetry
			for _, r := range saver.got {
				delivered = append(delivered, r.GetDelivered()...)
				released = append(released, r.GetReleased()...)
				failed = append(failed, r.GetFailed()...)
			}
			if len(failed) == 0 || failed[0].GetSeq() != 2 || failed[0].GetDeferred() || failed[0].GetNextAtMs() <= time.Now().UnixMilli() {
				t.Fatalf("failed %v: want ev-2 scheduled again after a back-off", failed)
			}
			if !slices.Contains(released, 3) {
				t.Fatalf("released %v: want ann's ev-3 given back behind ev-2", released)
			}
			if batch <= 1 {
				if !slices.Contains(delivered, 1) {
					t.Fatalf("delivered %v, want ev-1", delivered)
				}
				// bob's chain came after the failure: deferred, not posted.
				if slices.Contains(posted, "ev-4") || len(failed) != 2 || failed[1].GetSeq() != 4 || !failed[1].GetDeferred() {
					t.Fatalf("bob after the app failed: posted %v failed %v", posted, failed)
				}
			}
		})
	}
}

func TestRetryDelayGrowsAndIsCapped(t *testing.T) {
	d := &eventDelivery{lim: eventLimits{retryBase: time.Second, retryMax: 8 * time.Second}}
	for attempts, hi := range map[uint32]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 20: 8 * time.Second} {
		for i := 0; i < 50; i++ {
			if got := d.retryDelay(attempts); got < hi/2 || got > hi {
				t.Fatalf("retryDelay(%d) = %v, want in [%v, %v]", attempts, got, hi/2, hi)
			}
		}
	}
}

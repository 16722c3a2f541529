package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// holdRecorder collects what a deliveryHold releases.
type holdRecorder struct {
	mu     sync.Mutex
	items  []reportItem
	folded int
	gauge  int // the last held count the hold reported
}

func (r *holdRecorder) release(it reportItem) {
	r.mu.Lock()
	r.items = append(r.items, it)
	r.mu.Unlock()
}

func (r *holdRecorder) fold(n int) {
	r.mu.Lock()
	r.folded += n
	r.mu.Unlock()
}

func (r *holdRecorder) setGauge(n int) {
	r.mu.Lock()
	r.gauge = n
	r.mu.Unlock()
}

func (r *holdRecorder) held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gauge
}

func (r *holdRecorder) take() (items []reportItem, folded int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	items, r.items = r.items, nil
	return items, r.folded
}

func (r *holdRecorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.items)
}

func delivered(user string, id uint64) reportItem {
	return reportItem{app: "app", user: user, id: id}
}

func acked(user string, id uint64) reportItem {
	return reportItem{acked: true, app: "app", user: user, id: id}
}

// newTestHold holds for hold; a test that must not see expiry passes an
// hour.
func newTestHold(t *testing.T, hold time.Duration, bound int) (*deliveryHold, *holdRecorder) {
	rec := &holdRecorder{}
	h := newDeliveryHold(hold, time.Millisecond, bound, rec.release, rec.fold)
	h.heldGauge = rec.setGauge
	t.Cleanup(h.Close)
	return h, rec
}

// An ACK takes its message's held deliveries along, ahead of itself; the
// deliveries of unacked messages stay held.
func TestDeliveryHoldFoldsIntoAck(t *testing.T) {
	h, rec := newTestHold(t, time.Hour, 100)
	h.Delivered("app", "u", 1)
	h.Delivered("app", "u", 2)
	h.Delivered("app", "u", 2) // a second device of u
	if got, _ := rec.take(); len(got) != 0 {
		t.Fatalf("released %v before any ACK", got)
	}
	h.Acked("app", "u", 2)
	got, folded := rec.take()
	if want := []reportItem{delivered("u", 2), delivered("u", 2), acked("u", 2)}; !slices.Equal(got, want) {
		t.Fatalf("ACK released %v, want %v", got, want)
	}
	if folded != 2 || h.Len() != 1 || rec.held() != 1 {
		t.Fatalf("folded %d, %d held (gauge %d); want 2 and 1", folded, h.Len(), rec.held())
	}
	// An ACK of a message nothing holds goes on alone.
	h.Acked("app", "u", 9)
	if got, _ := rec.take(); !slices.Equal(got, []reportItem{acked("u", 9)}) {
		t.Fatalf("ACK of an unheld message released %v", got)
	}
}

// Another user's ACK of a held id does not release that delivery: saver
// must still count it for its own user.
func TestDeliveryHoldIgnoresForeignAck(t *testing.T) {
	h, rec := newTestHold(t, time.Hour, 100)
	h.Delivered("app", "alice", 7)
	h.Acked("app", "mallory", 7)
	got, folded := rec.take()
	if !slices.Equal(got, []reportItem{acked("mallory", 7)}) || folded != 0 || h.Len() != 1 {
		t.Fatalf("foreign ACK released %v, folded %d, %d held", got, folded, h.Len())
	}
	h.Close()
	if got, _ := rec.take(); !slices.Equal(got, []reportItem{delivered("alice", 7)}) {
		t.Fatalf("Close released %v", got)
	}
}

// Deliveries not acked within the hold are reported on their own, in
// delivery order, once each — also when the message was acked and then
// delivered again while its first entry still waited in the order.
func TestDeliveryHoldReleasesUnacked(t *testing.T) {
	h, rec := newTestHold(t, 20*time.Millisecond, 100)
	h.Delivered("app", "u", 1)
	h.Delivered("app", "u", 2)
	h.Acked("app", "u", 2)
	h.Delivered("app", "u", 2) // sent again (a resume), acked copy gone
	h.Delivered("app", "u", 3)
	waitUntil(t, func() bool { return h.Len() == 0 })
	got, folded := rec.take()
	want := []reportItem{delivered("u", 2), acked("u", 2), delivered("u", 1), delivered("u", 2), delivered("u", 3)}
	if !slices.Equal(got, want) || folded != 1 {
		t.Fatalf("released %v (folded %d), want %v (folded 1)", got, folded, want)
	}
	if rec.held() != 0 {
		t.Fatalf("held gauge %d after every release, want 0", rec.held())
	}
	// The timer re-arms for what comes after an empty spell.
	h.Delivered("app", "u", 4)
	waitUntil(t, func() bool { return rec.len() == 1 })
	if got, _ := rec.take(); !slices.Equal(got, []reportItem{delivered("u", 4)}) {
		t.Fatalf("second round released %v", got)
	}
}

// Beyond its bound the hold reports deliveries at once; after Close it
// holds nothing.
func TestDeliveryHoldBoundAndClose(t *testing.T) {
	h, rec := newTestHold(t, time.Hour, 2)
	h.Delivered("app", "u", 1)
	h.Delivered("app", "u", 2)
	h.Delivered("app", "u", 3)
	if got, _ := rec.take(); !slices.Equal(got, []reportItem{delivered("u", 3)}) {
		t.Fatalf("over the bound released %v, want only id 3", got)
	}
	h.Close()
	if got, _ := rec.take(); !slices.Equal(got, []reportItem{delivered("u", 1), delivered("u", 2)}) {
		t.Fatalf("Close released %v", got)
	}
	h.Delivered("app", "u", 4)
	h.Acked("app", "u", 4)
	if got, _ := rec.take(); !slices.Equal(got, []reportItem{delivered("u", 4), acked("u", 4)}) || h.Len() != 0 {
		t.Fatalf("after Close released %v, %d held", got, h.Len())
	}
}

// Through the reporter: a delivery acked within the hold reaches saver in
// the ACK's Report; one never acked reaches it after the hold; closing
// the reporter (drain, shutdown) flushes what is held.
func TestReporterHoldsDeliveriesForTheirAck(t *testing.T) {
	rec := &reportRecorder{}
	r := &room{log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(prometheus.NewRegistry()), saver: rec, life: context.Background(),
		cfg: config{reportHold: deliveredHold}}
	rp := newReporter(r)
	rp.Delivered("app", "u", 1)
	rp.Delivered("app", "u", 2)
	rp.Acked("app", "u", 1)
	if err := rp.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var acks, dels []uint64
	for _, req := range rec.calls {
		for _, r := range req.GetAcked() {
			acks = append(acks, r.GetId())
		}
		for _, r := range req.GetDelivered() {
			dels = append(dels, r.GetId())
		}
	}
	slices.Sort(dels)
	if !slices.Equal(acks, []uint64{1}) || !slices.Equal(dels, []uint64{1, 2}) {
		t.Fatalf("saver got acks %v and deliveries %v, want [1] and [1 2]", acks, dels)
	}
	if n := counterOf(t, r.m.deliveriesFolded); n != 1 {
		t.Fatalf("pushgw_room_deliveries_folded_total = %v, want 1", n)
	}
}

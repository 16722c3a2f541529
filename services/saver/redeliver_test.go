package main

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// aged returns a message created age ago, so it is old enough to claim.
func aged(user string, age time.Duration, expiresMs int64) *internalpb.Message {
	m := msg("app1", user, "", expiresMs)
	m.CreatedMs = time.Now().Add(-age).UnixMilli()
	return m
}

func (f *fixture) claim(t testing.TB, limit uint32, minAge time.Duration) []*internalpb.Message {
	t.Helper()
	r, err := f.cli.ClaimUndelivered(callCtx(t), &internalpb.ClaimUndeliveredRequest{Limit: limit, MinAgeMs: minAge.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetMessages()
}

func sortedCopy(v []uint64) []uint64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v
}

func TestClaimUndelivered(t *testing.T) {
	f := newFixture(t, 10)
	old := aged("alice", time.Minute, 0)
	young := aged("alice", time.Second, 0)
	delivered := aged("bob", time.Minute, 0)
	acked := aged("carol", time.Minute, 0)
	expired := aged("dave", time.Minute, time.Now().Add(-time.Second).UnixMilli())
	f.store(t, old, young, delivered, acked, expired)
	if _, err := f.cli.Report(callCtx(t), &internalpb.ReportRequest{
		Delivered: []*internalpb.MessageRef{{App: "app1", User: "bob", Id: delivered.GetId()}},
	}); err != nil {
		t.Fatal(err)
	}
	f.ack(t, acked)

	got := f.claim(t, 0, 10*time.Second)
	if !slices.Equal(ids(got), []uint64{old.GetId()}) {
		t.Fatalf("claimed %v, want only the old undelivered %d", ids(got), old.GetId())
	}
	if m := got[0]; m.GetUser() != "alice" || m.GetApp() != "app1" || string(m.GetPayload()) != string(old.GetPayload()) ||
		m.GetQos() != 1 || m.GetCreatedMs() != old.GetCreatedMs() {
		t.Fatalf("claimed message %v, stored %v", m, old)
	}
	if got := f.claim(t, 0, 10*time.Second); len(got) != 0 {
		t.Fatalf("claimed again right away: %v", ids(got))
	}
	if n := counterValue(f.srv.metrics.claimed); n != 1 {
		t.Fatalf("claimed metric %v, want 1", n)
	}
	// min_age 0 takes the young one too, and still not the claimed one.
	if got := f.claim(t, 0, 0); !slices.Equal(ids(got), []uint64{young.GetId()}) {
		t.Fatalf("claim with min_age 0: %v, want %d", ids(got), young.GetId())
	}

	// After each backoff it comes back, three times in all.
	now := time.Now()
	for i, wait := range redeliverBackoff {
		now = now.Add(wait + time.Second)
		got, err := f.srv.db.claimUndelivered(callCtx(t), claimMaxLimit, 10*time.Second, now)
		if err != nil {
			t.Fatal(err)
		}
		want := []uint64{old.GetId(), young.GetId()}
		if i == maxRedeliveries-1 {
			want = nil // both were claimed maxRedeliveries times
		}
		if !slices.Equal(sortedCopy(ids(got)), sortedCopy(want)) {
			t.Fatalf("claim %d after backoff %v: %v, want %v", i+2, wait, ids(got), want)
		}
	}
	if got, err := f.srv.db.claimUndelivered(callCtx(t), claimMaxLimit, 0, now.Add(time.Hour)); err != nil || len(got) != 0 {
		t.Fatalf("claimed after %d redeliveries: %v %v", maxRedeliveries, ids(got), err)
	}
	// Still stored: a reconnect (Pending) delivers it as before.
	if got := f.pending(t, "app1", "alice", ""); len(got) != 2 {
		t.Fatalf("pending after claims: %v", ids(got))
	}
}

func TestClaimUndeliveredLimitAndValidation(t *testing.T) {
	f := newFixture(t, 10)
	var all []*internalpb.Message
	for i := 0; i < 5; i++ {
		all = append(all, aged("erin", time.Minute, 0))
	}
	f.store(t, all...)
	if got := f.claim(t, 3, time.Second); len(got) != 3 {
		t.Fatalf("limit 3 claimed %d", len(got))
	}
	if got := f.claim(t, 3, time.Second); len(got) != 2 {
		t.Fatalf("second claim got %d, want the other 2", len(got))
	}
	_, err := f.cli.ClaimUndelivered(callCtx(t), &internalpb.ClaimUndeliveredRequest{MinAgeMs: -1})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("negative min_age: %v", err)
	}
}

// Concurrent claimers (several centers) must never get the same message.
func TestClaimUndeliveredConcurrent(t *testing.T) {
	f := newFixture(t, 10)
	const n, claimers = 400, 6
	var all []*internalpb.Message
	for i := 0; i < n; i++ {
		all = append(all, aged("frank", time.Minute, 0))
	}
	f.store(t, all...)
	var mu sync.Mutex
	seen := map[uint64]int{}
	var wg sync.WaitGroup
	for c := 0; c < claimers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 4; round++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := f.cli.ClaimUndelivered(ctx, &internalpb.ClaimUndeliveredRequest{Limit: 50, MinAgeMs: 1000})
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, m := range r.GetMessages() {
					seen[m.GetId()]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("message %d claimed %d times in one round", id, k)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d of %d messages claimed by %d×4 claims of 50", len(seen), n, claimers)
	}
}

func TestBackoffCase(t *testing.T) {
	if got, want := backoffCase(), "CASE redeliveries WHEN 0 THEN 10000 WHEN 1 THEN 60000 ELSE 300000 END"; got != want {
		t.Fatalf("backoffCase() = %q, want %q", got, want)
	}
}

package main

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

func (f *fixture) pendingBatch(t testing.TB, reqs ...*internalpb.PendingRequest) []*internalpb.PendingBatchEntry {
	t.Helper()
	r, err := f.cli.PendingBatch(callCtx(t), &internalpb.PendingBatchRequest{Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GetReplies()) != len(reqs) {
		t.Fatalf("%d replies to %d requests", len(r.GetReplies()), len(reqs))
	}
	for i, e := range r.GetReplies() {
		if e.GetFailed() {
			t.Fatalf("request %d failed: %s", i, e.GetError())
		}
	}
	return r.GetReplies()
}

func batchCount(f *fixture, answer string) float64 {
	return counterValue(f.srv.metrics.pendingBatch.WithLabelValues(answer))
}

func preq(app, user string) *internalpb.PendingRequest {
	return &internalpb.PendingRequest{App: app, User: user, Device: "d1"}
}

// A login batch of new users costs one MySQL read; their next logins cost
// none (Redis alone answers "nothing pending").
func TestPendingBatchEmptyUsersCostNoMySQLRead(t *testing.T) {
	f := newFixture(t, 10)
	const n = 200
	var reqs []*internalpb.PendingRequest
	for i := range n {
		reqs = append(reqs, preq("app1", fmt.Sprintf("new-%d", i)))
	}
	for i, e := range f.pendingBatch(t, reqs...) {
		if len(e.GetMessages()) != 0 {
			t.Fatalf("new user %d got %d messages", i, len(e.GetMessages()))
		}
	}
	if q, e := counterValue(f.srv.metrics.pendingBatchQueries), batchCount(f, batchMySQLEmpty); q != 1 || e != n {
		t.Fatalf("first batch: %v MySQL reads, %v users found empty there; want 1 and %d", q, e, n)
	}
	if m := counterValue(f.srv.metrics.inboxMarks.WithLabelValues(markResultDone)); m != n {
		t.Fatalf("%v inboxes marked empty, want %d", m, n)
	}
	f.pendingBatch(t, reqs...)
	if q, r := counterValue(f.srv.metrics.pendingBatchQueries), batchCount(f, batchRedisEmpty); q != 1 || r != n {
		t.Fatalf("second batch: %v MySQL reads in all, %v answered from Redis; want 1 and %d", q, r, n)
	}
	if fb := counterValue(f.srv.metrics.pendingFallback); fb != 0 {
		t.Fatalf("%v single-user MySQL fallbacks, want 0", fb)
	}
	// Pending (one user) trusts the same marker.
	if got := f.pending(t, "app1", "new-0", "d1"); len(got) != 0 || counterValue(f.srv.metrics.pendingFallback) != 0 {
		t.Fatalf("Pending after the batch marked the inbox: %v, fallbacks %v", ids(got), counterValue(f.srv.metrics.pendingFallback))
	}
}

// Marks never hide a message: not after FLUSHALL, not when a Store comes
// after the mark, and a batch mixes users with and without messages.
func TestPendingBatchMarkersAndFlush(t *testing.T) {
	f := newFixture(t, 10)
	a := msg("app1", "has", "", 0)
	f.store(t, a)
	got := f.pendingBatch(t, preq("app1", "has"), preq("app1", "empty"), preq("app2", "has"))
	if !slices.Equal(ids(got[0].GetMessages()), []uint64{a.GetId()}) || len(got[1].GetMessages()) != 0 || len(got[2].GetMessages()) != 0 {
		t.Fatalf("mixed batch: %v / %v / %v", ids(got[0].GetMessages()), ids(got[1].GetMessages()), ids(got[2].GetMessages()))
	}
	if d := got[0].GetMessages()[0].GetDeliveryCount(); d != 1 {
		t.Fatalf("delivery count %d, want 1", d)
	}
	if q := counterValue(f.srv.metrics.pendingBatchQueries); q != 2 {
		t.Fatalf("%v MySQL reads for two apps, want 2", q)
	}

	// A Store into a marked empty inbox: the batch sees it from Redis.
	b := msg("app1", "empty", "", 0)
	f.store(t, b)
	got = f.pendingBatch(t, preq("app1", "empty"))
	if !slices.Equal(ids(got[0].GetMessages()), []uint64{b.GetId()}) {
		t.Fatalf("store after mark: %v", ids(got[0].GetMessages()))
	}

	// FLUSHALL drops marks: the next batch asks MySQL again.
	if err := f.rdb.FlushAll(callCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	before := counterValue(f.srv.metrics.pendingBatchQueries)
	got = f.pendingBatch(t, preq("app1", "has"), preq("app1", "empty"), preq("app2", "has"))
	if !slices.Equal(ids(got[0].GetMessages()), []uint64{a.GetId()}) || !slices.Equal(ids(got[1].GetMessages()), []uint64{b.GetId()}) ||
		len(got[2].GetMessages()) != 0 {
		t.Fatalf("after flush: %v / %v / %v", ids(got[0].GetMessages()), ids(got[1].GetMessages()), ids(got[2].GetMessages()))
	}
	if q := counterValue(f.srv.metrics.pendingBatchQueries); q != before+2 {
		t.Fatalf("after flush: %v MySQL reads, want %v", q-before, 2)
	}

	// Marked empty, then Redis lost everything and a Store recreated the
	// inbox without its mark: the old mark is gone with it, so MySQL is
	// asked and both messages come back.
	f.pendingBatch(t, preq("app3", "u")) // marks app3/u empty
	c := msg("app3", "u", "", 0)
	if err := f.rdb.FlushAll(callCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	d := msg("app3", "u", "", 0)
	f.store(t, c)
	if err := f.rdb.FlushAll(callCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	f.store(t, d)
	got = f.pendingBatch(t, preq("app3", "u"))
	if !slices.Equal(ids(got[0].GetMessages()), []uint64{c.GetId(), d.GetId()}) {
		t.Fatalf("flush, store, flush, store: %v, want %v", ids(got[0].GetMessages()), []uint64{c.GetId(), d.GetId()})
	}

	// Paging: after_id past the only message answers empty from the mark.
	got = f.pendingBatch(t, &internalpb.PendingRequest{App: "app3", User: "u", Device: "d1", AfterId: d.GetId() + 1})
	if len(got[0].GetMessages()) != 0 {
		t.Fatalf("page after the last id: %v", ids(got[0].GetMessages()))
	}
}

// A write or a flush between a probe's MySQL read and its mark drops the
// mark: the inbox may lack what the write added.
func TestInboxMarkLosesLease(t *testing.T) {
	f := newFixture(t, 10)
	in, now := f.srv.inbox, time.Now()
	for _, race := range []string{"store", "flush"} {
		u := userRef{"app1", "lease-" + race}
		ps := []probe{{u: u}}
		if err := in.probeAll(callCtx(t), ps, now); err != nil {
			t.Fatal(err)
		}
		if ps[0].state != probeUntrusted {
			t.Fatalf("%s: new user probed %d, want untrusted", race, ps[0].state)
		}
		switch race {
		case "store":
			f.store(t, msg(u.app, u.user, "", 0))
		case "flush":
			if err := f.rdb.FlushAll(callCtx(t)).Err(); err != nil {
				t.Fatal(err)
			}
		}
		n, err := in.markEmpty(callCtx(t), ps, now)
		if err != nil || n != 0 {
			t.Fatalf("%s: mark after the race: %d marked, err %v", race, n, err)
		}
		if err := in.probeAll(callCtx(t), ps, now); err != nil || ps[0].state != probeUntrusted {
			t.Fatalf("%s: inbox trusted after a lost lease (state %d, err %v)", race, ps[0].state, err)
		}
	}
	// Untouched, the mark holds, and a stale mark is not trusted.
	ps := []probe{{u: userRef{"app1", "calm"}}}
	if err := in.probeAll(callCtx(t), ps, now); err != nil {
		t.Fatal(err)
	}
	if n, err := in.markEmpty(callCtx(t), ps, now); err != nil || n != 1 {
		t.Fatalf("calm mark: %d, %v", n, err)
	}
	if err := in.probeAll(callCtx(t), ps, now); err != nil || ps[0].state != probeEmpty {
		t.Fatalf("calm probe: state %d, err %v", ps[0].state, err)
	}
	if err := in.probeAll(callCtx(t), ps, now.Add(inboxTrustWindow+time.Second)); err != nil || ps[0].state != probeUntrusted {
		t.Fatalf("probe past the trust window: state %d, err %v", ps[0].state, err)
	}
}

func TestPendingBatchBadRequests(t *testing.T) {
	f := newFixture(t, 10)
	big := make([]*internalpb.PendingRequest, maxPendingBatch+1)
	for i := range big {
		big[i] = preq("app1", fmt.Sprint(i))
	}
	for name, reqs := range map[string][]*internalpb.PendingRequest{
		"too many":    big,
		"no user":     {preq("app1", "ok"), preq("app1", "")},
		"long device": {{App: "app1", User: "u", Device: string(make([]byte, maxDeviceLen+1))}},
	} {
		_, err := f.cli.PendingBatch(callCtx(t), &internalpb.PendingBatchRequest{Requests: reqs})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if r, err := f.cli.PendingBatch(callCtx(t), &internalpb.PendingBatchRequest{}); err != nil || len(r.GetReplies()) != 0 {
		t.Fatalf("empty batch: %v, %v", r, err)
	}
}

package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// batchSeqs returns the seqs of entry i of rep, or why it failed.
func batchSeqs(rep *internalpb.CatchUpBatchReply, i int) ([]uint64, string) {
	e := rep.GetEntries()[i]
	if e.GetFailed() {
		return nil, e.GetError()
	}
	var seqs []uint64
	for _, n := range e.GetBroadcasts() {
		seqs = append(seqs, rep.GetBroadcasts()[n].GetSeq())
	}
	return seqs, ""
}

// Every entry of a CatchUpBatch is what CatchUp answers for its request:
// tags, online_only, expiry, limits and bad input alike; logins of one
// app with the same after_seq share one MySQL read, and a broadcast is
// sent once per reply.
func TestCatchUpBatchAnswersAsCatchUp(t *testing.T) {
	f := newTagFixture(t, 1000, 64)
	f.add(t, "a", "vip", "alice", "bob")
	f.add(t, "a", "beta", "bob")
	now := time.Now()
	f.storeB(t, tagBcast("a", ""))                             // 1
	f.storeB(t, tagBcast("a", "vip"))                          // 2
	f.storeB(t, tagBcast("a", "beta"))                         // 3
	f.storeB(t, bcast("a", now.Add(-time.Second).UnixMilli())) // 4: expired
	online := tagBcast("a", "")
	online.OnlineOnly = true
	f.storeB(t, online)                  // 5: online only
	f.storeB(t, tagBcast("a", "nobody")) // 6
	f.storeB(t, tagBcast("a", "vip"))    // 7
	f.storeB(t, tagBcast("other", ""))   // 1 of other

	later, earlier := now.Add(time.Hour).UnixMilli(), now.Add(-time.Minute).UnixMilli()
	reqs := []*internalpb.CatchUpRequest{
		{App: "a", User: "alice", OnlineSinceMs: later},
		{App: "a", User: "bob", OnlineSinceMs: later},
		{App: "a", User: "bob", OnlineSinceMs: earlier},
		{App: "a", User: "bob", AfterSeq: 3, OnlineSinceMs: later},
		{App: "a", User: "bob", Limit: 2, OnlineSinceMs: later},
		{App: "a", User: "dave", OnlineSinceMs: earlier},
		{App: "a", OnlineSinceMs: later},
		{App: "other", User: "alice", OnlineSinceMs: later},
		{App: "a", User: strings.Repeat("u", limits.MaxUserLen+1), OnlineSinceMs: later}, // bad user
		{App: "", User: "alice"},                                                         // bad app
	}
	reads := counterValue(f.srv.metrics.catchUpReads)
	rep, err := f.cli.CatchUpBatch(callCtx(t), &internalpb.CatchUpBatchRequest{Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.GetEntries()) != len(reqs) {
		t.Fatalf("%d entries for %d requests", len(rep.GetEntries()), len(reqs))
	}
	for i, r := range reqs {
		got, failed := batchSeqs(rep, i)
		one, err := f.cli.CatchUp(callCtx(t), r)
		if err != nil {
			if failed == "" {
				t.Fatalf("request %d (%v): CatchUp failed (%v), the batch answered %v", i, r, err, got)
			}
			continue
		}
		if failed != "" {
			t.Fatalf("request %d (%v) failed in the batch: %s", i, r, failed)
		}
		var want []uint64
		for _, b := range one.GetBroadcasts() {
			want = append(want, b.GetSeq())
		}
		if !equalSeqs(got, want...) {
			t.Fatalf("request %d (%v): batch %v, CatchUp %v", i, r, got, want)
		}
	}
	for _, i := range []int{8, 9} {
		if _, why := batchSeqs(rep, i); why == "" {
			t.Fatalf("bad request %d answered, want failed", i)
		}
	}
	if got, _ := batchSeqs(rep, 2); !equalSeqs(got, 1, 2, 3, 5, 7) {
		t.Fatalf("bob online since earlier = %v, want [1 2 3 5 7]", got)
	}
	// Groups: (a, 0), (a, 3), (other, 0).
	if n := counterValue(f.srv.metrics.catchUpReads) - reads; n != 3 {
		t.Fatalf("%v shared reads, want 3", n)
	}
	ids := map[uint64]bool{}
	for _, b := range rep.GetBroadcasts() {
		if ids[b.GetId()] {
			t.Fatalf("broadcast %d twice in one reply", b.GetId())
		}
		ids[b.GetId()] = true
	}

	tooMany := make([]*internalpb.CatchUpRequest, maxCatchUpBatch+1)
	for i := range tooMany {
		tooMany[i] = &internalpb.CatchUpRequest{App: "a"}
	}
	if _, err := f.cli.CatchUpBatch(callCtx(t), &internalpb.CatchUpBatchRequest{Requests: tooMany}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("batch of %d: %v, want InvalidArgument", len(tooMany), err)
	}
}

// A login whose broadcasts the shared read cut off (other logins' tags
// filled it) gets a read of its own and still its newest ones.
func TestCatchUpBatchCutSharedRead(t *testing.T) {
	f := newTagFixture(t, 1000, 64)
	f.add(t, "a", "vip", "alice")
	f.add(t, "a", "flood", "bob")
	f.storeB(t, tagBcast("a", "vip")) // 1
	f.storeB(t, tagBcast("a", "vip")) // 2
	for i := 0; i < catchUpSharedLimit; i++ {
		f.storeB(t, tagBcast("a", "flood"))
	}
	later := time.Now().Add(time.Hour).UnixMilli()
	reqs := []*internalpb.CatchUpRequest{
		{App: "a", User: "alice", OnlineSinceMs: later},
		{App: "a", User: "bob", OnlineSinceMs: later},
	}
	rep, err := f.cli.CatchUpBatch(callCtx(t), &internalpb.CatchUpBatchRequest{Requests: reqs})
	if err != nil {
		t.Fatal(err)
	}
	if got, why := batchSeqs(rep, 0); !equalSeqs(got, 1, 2) {
		t.Fatalf("alice = %v %s, want [1 2]", got, why)
	}
	got, why := batchSeqs(rep, 1)
	want := make([]uint64, 0, catchUpMaxLimit)
	for s := uint64(2 + catchUpSharedLimit - catchUpMaxLimit + 1); s <= 2+catchUpSharedLimit; s++ {
		want = append(want, s)
	}
	if !equalSeqs(got, want...) {
		t.Fatalf("bob = %s %s, want the newest %d (%d..%d)", fmt.Sprint(len(got)), why, catchUpMaxLimit, want[0], want[len(want)-1])
	}
	if n := counterValue(f.srv.metrics.catchUpBatch.WithLabelValues(catchUpOwn)); n != 1 {
		t.Fatalf("%v logins read on their own, want 1 (alice)", n)
	}
}

// A batch whose shared read holds no tag broadcast reads no login's tags
// (a Redis and, for an uncached user, a MySQL read each); once a tag
// broadcast is pending, the group's tags are read and each login gets
// exactly its own.
func TestCatchUpBatchReadsTagsOnlyWhenNeeded(t *testing.T) {
	f := newTagFixture(t, 1000, 64)
	f.add(t, "a", "vip", "alice")
	userTagReads := func() float64 {
		return counterValue(f.tm.reads.WithLabelValues("user_tags", "redis")) + counterValue(f.tm.reads.WithLabelValues("user_tags", "mysql"))
	}
	later := time.Now().Add(time.Hour).UnixMilli()
	reqs := []*internalpb.CatchUpRequest{
		{App: "a", User: "alice", OnlineSinceMs: later},
		{App: "a", User: "bob", OnlineSinceMs: later},
	}
	catchUp := func() *internalpb.CatchUpBatchReply {
		t.Helper()
		rep, err := f.cli.CatchUpBatch(callCtx(t), &internalpb.CatchUpBatchRequest{Requests: reqs})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	before := userTagReads()
	rep := catchUp() // nothing to catch up on
	if got, why := batchSeqs(rep, 0); len(got) != 0 || why != "" {
		t.Fatalf("alice = %v %s, want nothing", got, why)
	}
	f.storeB(t, tagBcast("a", "")) // 1: app-wide
	rep = catchUp()
	for i := range reqs {
		if got, why := batchSeqs(rep, i); !equalSeqs(got, 1) {
			t.Fatalf("login %d = %v %s, want [1]", i, got, why)
		}
	}
	if n := userTagReads() - before; n != 0 {
		t.Fatalf("%v user tag reads with no tag broadcast pending, want 0", n)
	}

	f.storeB(t, tagBcast("a", "vip")) // 2
	rep = catchUp()
	if got, why := batchSeqs(rep, 0); !equalSeqs(got, 1, 2) {
		t.Fatalf("alice = %v %s, want [1 2]", got, why)
	}
	if got, why := batchSeqs(rep, 1); !equalSeqs(got, 1) {
		t.Fatalf("bob = %v %s, want [1]", got, why)
	}
	if n := userTagReads() - before; n != 2 {
		t.Fatalf("%v user tag reads with a tag broadcast pending, want 2 (one per login)", n)
	}
}

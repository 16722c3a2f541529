package main

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

func (f *tagFixture) catchUpUser(t *testing.T, app, user string, after uint64) []uint64 {
	t.Helper()
	rep, err := f.cli.CatchUp(callCtx(t), &internalpb.CatchUpRequest{App: app, User: user, AfterSeq: after, OnlineSinceMs: time.Now().Add(time.Hour).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, b := range rep.GetBroadcasts() {
		seqs = append(seqs, b.GetSeq())
	}
	return seqs
}

func tagBcast(app, tag string) *internalpb.Broadcast {
	b := bcast(app, time.Now().Add(time.Hour).UnixMilli())
	b.Tag = tag
	return b
}

// A user catches up on the app-wide broadcasts and on those of the tags it
// is a member of, in seq order; never on another tag's, nor on a tag it
// left; from Redis and, after Redis lost the sets, from MySQL alike.
func TestBroadcastCatchUpTags(t *testing.T) {
	f := newTagFixture(t, 1000, 64)
	f.add(t, "a", "vip", "alice", "bob")
	f.add(t, "a", "beta", "bob")
	f.add(t, "other", "vip", "carol")

	f.storeB(t, tagBcast("a", ""))       // 1
	f.storeB(t, tagBcast("a", "vip"))    // 2
	f.storeB(t, tagBcast("a", "beta"))   // 3
	f.storeB(t, tagBcast("a", ""))       // 4
	f.storeB(t, tagBcast("a", "nobody")) // 5
	f.storeB(t, tagBcast("a", "vip"))    // 6
	f.storeB(t, tagBcast("other", "vip"))

	check := func(stage string) {
		t.Helper()
		for _, c := range []struct {
			user  string
			after uint64
			want  []uint64
		}{
			{"alice", 0, []uint64{1, 2, 4, 6}},
			{"bob", 0, []uint64{1, 2, 3, 4, 6}},
			{"bob", 3, []uint64{4, 6}},
			{"carol", 0, []uint64{1, 4}}, // a member of vip in another app only
			{"dave", 0, []uint64{1, 4}},
			{"", 0, []uint64{1, 4}}, // no user: app-wide only
		} {
			if got := f.catchUpUser(t, "a", c.user, c.after); !equalSeqs(got, c.want...) {
				t.Fatalf("%s: catch-up of %q after %d = %v, want %v", stage, c.user, c.after, got, c.want)
			}
		}
	}
	check("redis")
	if err := f.rdb.FlushAll(callCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	check("mysql after redis loss")

	// Leaving a tag ends catching up on it, stored ones included.
	f.remove(t, "a", "vip", "alice")
	if got := f.catchUpUser(t, "a", "alice", 0); !equalSeqs(got, 1, 4) {
		t.Fatalf("catch-up of alice after leaving vip = %v, want [1 4]", got)
	}

	// The limit counts only rows the user gets: the newest 2 of bob's.
	rep, err := f.cli.CatchUp(callCtx(t), &internalpb.CatchUpRequest{App: "a", User: "bob", Limit: 2, OnlineSinceMs: time.Now().Add(time.Hour).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rep.GetBroadcasts()); n != 2 || rep.GetBroadcasts()[0].GetSeq() != 4 || rep.GetBroadcasts()[1].GetSeq() != 6 {
		t.Fatalf("limited catch-up of bob = %v, want seqs [4 6]", rep.GetBroadcasts())
	}

	// A tag that is not a tag name is not stored.
	if _, err := f.cli.StoreBroadcast(callCtx(t), &internalpb.StoreBroadcastRequest{Broadcast: tagBcast("a", "a\x01b")}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("store with a control character in the tag: %v", err)
	}

	// A bad user is refused, not treated as a user without tags.
	if _, err := f.cli.CatchUp(callCtx(t), &internalpb.CatchUpRequest{App: "a", User: string([]byte{0xff})}); err == nil {
		t.Fatal("catch-up with an invalid user accepted")
	}
}

package main

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pushgw/pushgw/internal/redistest"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// TestInboxWrite checks the inbox writes key by key on a private Redis:
// exact scores for ids above 2^53, bodies, a TTL that only grows, the
// lease dropped, and the marker written by a complete fill only.
func TestInboxWrite(t *testing.T) {
	ctx := context.Background()
	rdb, err := newRedis(ctx, redistest.Start(t).Addr(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	in := &inbox{rdb: rdb}
	now := time.Now()
	long, short := now.Add(time.Hour).UnixMilli(), now.Add(time.Minute).UnixMilli()
	a1, a2, b1 := msg("app", "alice", "", long), msg("app", "alice", "phone", short), msg("app", "bob", "", 0)
	alice, bob := userRef{"app", "alice"}, userRef{"app", "bob"}
	if err := rdb.Set(ctx, inboxLeaseKey(alice.app, alice.user), "token", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := in.add(ctx, []*internalpb.Message{a1, b1, a2}); err != nil {
		t.Fatal(err)
	}

	for _, m := range []*internalpb.Message{a1, a2, b1} {
		zk, hk := inboxKey(m.GetApp(), m.GetUser()), bodyKey(m.GetApp(), m.GetUser())
		score, err := rdb.ZScore(ctx, zk, member(m.GetId())).Result()
		if err != nil || score != float64(m.GetId()) {
			t.Fatalf("score of %d: %v, %v; want %v", m.GetId(), score, err, float64(m.GetId()))
		}
		raw, err := rdb.HGet(ctx, hk, member(m.GetId())).Result()
		if err != nil {
			t.Fatalf("body of %d: %v", m.GetId(), err)
		}
		var got internalpb.Message
		if err := proto.Unmarshal([]byte(raw), &got); err != nil || !proto.Equal(&got, m) {
			t.Fatalf("body of %d: %v (%v); want %v", m.GetId(), &got, err, m)
		}
	}
	if n, _ := rdb.Exists(ctx, inboxLeaseKey(alice.app, alice.user)).Result(); n != 0 {
		t.Fatal("the write left alice's lease in place")
	}
	wantTTL := func(u userRef, deadline int64) {
		t.Helper()
		for _, k := range []string{inboxKey(u.app, u.user), bodyKey(u.app, u.user)} {
			at, err := rdb.PExpireTime(ctx, k).Result()
			if err != nil || at.Milliseconds() != deadline+inboxTTLSlack.Milliseconds() {
				t.Fatalf("%s expires at %v (%v); want %d", k, at.Milliseconds(), err, deadline+inboxTTLSlack.Milliseconds())
			}
		}
	}
	// alice's keys live as long as her longest message, not her last one.
	wantTTL(alice, long)
	// bob's message never expires: his keys get the idle-inbox TTL.
	if at, _ := rdb.PExpireTime(ctx, inboxKey(bob.app, bob.user)).Result(); at < time.Duration(now.Add(inboxNoExpiryTTL).UnixMilli())*time.Millisecond {
		t.Fatalf("bob's inbox expires at %v ms; want at least a week away", at.Milliseconds())
	}
	// A later short-lived message does not shorten alice's keys either.
	if err := in.add(ctx, []*internalpb.Message{msg("app", "alice", "", short)}); err != nil {
		t.Fatal(err)
	}
	wantTTL(alice, long)

	// add never marks an inbox complete: read does not trust it.
	if _, err := in.read(ctx, alice, "phone", 0, 10, now); err != errInboxUntrusted {
		t.Fatalf("read of an unfilled inbox: %v; want errInboxUntrusted", err)
	}
	// A complete fill does, and an empty one still gets the marker and a TTL.
	if err := in.fill(ctx, alice, []*internalpb.Message{a1, a2}, true); err != nil {
		t.Fatal(err)
	}
	got, err := in.read(ctx, alice, "phone", 0, 10, now)
	if err != nil || len(got) != 3 || got[0].GetId() != a1.GetId() || got[1].GetId() != a2.GetId() {
		t.Fatalf("read after a complete fill: %v, %v", got, err)
	}
	carol := userRef{"app", "carol"}
	if err := in.fill(ctx, carol, nil, true); err != nil {
		t.Fatal(err)
	}
	if got, err := in.read(ctx, carol, "", 0, 10, now); err != nil || len(got) != 0 {
		t.Fatalf("read of an inbox filled empty: %v, %v", got, err)
	}
	if ttl, _ := rdb.PTTL(ctx, inboxKey(carol.app, carol.user)).Result(); ttl <= 0 || ttl > inboxTrustWindow {
		t.Fatalf("empty filled inbox TTL %v; want within the trust window", ttl)
	}
}

package main

import (
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

func sess(app, user string, conn uint64) *internalpb.Session {
	return &internalpb.Session{App: app, User: user, ConnId: conn, RoomAddr: "r"}
}

func keys(app string, users ...string) []*internalpb.UserKey {
	out := make([]*internalpb.UserKey, len(users))
	for i, u := range users {
		out[i] = &internalpb.UserKey{App: app, User: u}
	}
	return out
}

func TestRouteCacheRemembersAndForgets(t *testing.T) {
	c := newRouteCache(2, time.Minute)
	t0 := time.Unix(1000, 0)
	c.remember(keys("a", "u1", "u2"), []*internalpb.Session{sess("a", "u1", 1), sess("a", "u1", 2), sess("a", "u2", 3), sess("b", "u1", 9)}, t0)
	got, unknown := c.recall(keys("a", "u1", "u3"), t0)
	if len(got) != 2 || got[0].GetConnId() != 1 || got[1].GetConnId() != 2 || len(unknown) != 1 || unknown[0].GetUser() != "u3" {
		t.Fatalf("recall: %v, unknown %v", got, unknown)
	}
	// An answer with no session (offline) drops the user.
	c.remember(keys("a", "u2"), nil, t0)
	if _, unknown := c.recall(keys("a", "u2"), t0); len(unknown) != 1 {
		t.Fatal("an offline answer left the user in the cache")
	}
	// Past the TTL an entry is not used.
	if _, unknown := c.recall(keys("a", "u1"), t0.Add(2*time.Minute)); len(unknown) != 1 {
		t.Fatal("a stale answer was used")
	}
	// The least recently remembered goes when the cache is full.
	c.remember(keys("a", "u4"), []*internalpb.Session{sess("a", "u4", 4)}, t0)
	c.remember(keys("a", "u5"), []*internalpb.Session{sess("a", "u5", 5)}, t0)
	if c.len() != 2 {
		t.Fatalf("cache holds %d users, bound 2", c.len())
	}
	if _, unknown := c.recall(keys("a", "u1"), t0); len(unknown) != 1 {
		t.Fatal("the oldest user survived eviction")
	}
	// The nil (disabled) cache recalls nothing.
	var off *routeCache = newRouteCache(0, time.Minute)
	off.remember(keys("a", "u1"), []*internalpb.Session{sess("a", "u1", 1)}, t0)
	if got, unknown := off.recall(keys("a", "u1"), t0); len(got) != 0 || len(unknown) != 1 {
		t.Fatal("a disabled cache answered")
	}
}

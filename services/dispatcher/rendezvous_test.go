package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func makeRooms(n int) []roomEntry {
	rooms := make([]roomEntry, n)
	for i := range rooms {
		rooms[i] = roomEntry{ID: fmt.Sprintf("room-%d", i), Endpoint: fmt.Sprintf("127.0.0.1:%d", 7300+i*10), IDC: "dc1"}
	}
	return rooms
}

func TestRankStableAndOrderIndependent(t *testing.T) {
	rooms := makeRooms(6)
	want := rank(rooms, userKey("app", "alice"), "dc1", nil)
	if len(want) != 6 {
		t.Fatalf("got %d endpoints", len(want))
	}
	for i := 0; i < 20; i++ {
		shuffled := slices.Clone(rooms)
		rand.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if got := rank(shuffled, userKey("app", "alice"), "dc1", nil); !slices.Equal(got, want) {
			t.Fatalf("order depends on input order: %v vs %v", got, want)
		}
	}
	// The same user of another app is a different key.
	differs := false
	for u := 0; u < 50 && !differs; u++ {
		differs = rank(rooms, userKey("a", fmt.Sprint(u)), "dc1", nil)[0] != rank(rooms, userKey("b", fmt.Sprint(u)), "dc1", nil)[0]
	}
	if !differs {
		t.Fatal("app does not take part in the hash")
	}
}

// Adding a room moves only the users whose new first choice it is;
// removing one moves only the users it was first for.
func TestRankMinimalMovement(t *testing.T) {
	rooms := makeRooms(5)
	grown := append(slices.Clone(rooms), roomEntry{ID: "room-new", Endpoint: "127.0.0.1:9999", IDC: "dc1"})
	moved := 0
	const users = 5000
	for u := 0; u < users; u++ {
		key := userKey("app", fmt.Sprintf("user-%d", u))
		before := rank(rooms, key, "dc1", nil)[0]
		after := rank(grown, key, "dc1", nil)[0]
		if after != before {
			if after != "127.0.0.1:9999" {
				t.Fatalf("user %d moved from %s to %s, not to the new room", u, before, after)
			}
			moved++
		}
		shrunk := rooms[1:]
		if before != rooms[0].Endpoint && rank(shrunk, key, "dc1", nil)[0] != before {
			t.Fatalf("user %d moved although its room stayed", u)
		}
	}
	// About 1/6 should move to the new room.
	if moved < users/6*7/10 || moved > users/6*13/10 {
		t.Fatalf("%d of %d users moved to the new room, want about %d", moved, users, users/6)
	}
}

func TestRankSpread(t *testing.T) {
	rooms := makeRooms(5)
	count := map[string]int{}
	const users = 20000
	for u := 0; u < users; u++ {
		count[rank(rooms, userKey("app", fmt.Sprintf("u%d", u)), "dc1", nil)[0]]++
	}
	want := users / len(rooms)
	for ep, n := range count {
		if n < want*85/100 || n > want*115/100 {
			t.Fatalf("room %s is first for %d users, want %d±15%%: %v", ep, n, want, count)
		}
	}
	if len(count) != len(rooms) {
		t.Fatalf("only %d rooms ever first", len(count))
	}
}

func TestRankFailedLast(t *testing.T) {
	rooms := makeRooms(5)
	key := userKey("app", "bob")
	base := rank(rooms, key, "dc1", nil)
	failed := map[string]bool{base[0]: true, base[2]: true, "10.0.0.1:1": true}
	got := rank(rooms, key, "dc1", failed)
	want := []string{base[1], base[3], base[4], base[0], base[2]}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Every endpoint failed: all are still offered, in hash order.
	all := map[string]bool{}
	for _, ep := range base {
		all[ep] = true
	}
	if got := rank(rooms, key, "dc1", all); !slices.Equal(got, base) {
		t.Fatalf("all failed: got %v, want %v", got, base)
	}
}

func TestRankOtherIDCAfterLocal(t *testing.T) {
	rooms := makeRooms(4)
	rooms[0].IDC, rooms[2].IDC = "dc2", "dc2"
	for u := 0; u < 100; u++ {
		got := rank(rooms, userKey("app", fmt.Sprint(u)), "dc1", nil)
		local := map[string]bool{rooms[1].Endpoint: true, rooms[3].Endpoint: true}
		if !local[got[0]] || !local[got[1]] || local[got[2]] || local[got[3]] {
			t.Fatalf("user %d: %v does not put dc1 rooms first", u, got)
		}
	}
	// A failed local room goes after the remote ones.
	got := rank(rooms, userKey("app", "x"), "dc1", map[string]bool{rooms[1].Endpoint: true, rooms[3].Endpoint: true})
	if got[0] != rooms[0].Endpoint && got[0] != rooms[2].Endpoint {
		t.Fatalf("failed local rooms still first: %v", got)
	}
}

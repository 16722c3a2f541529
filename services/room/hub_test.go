package main

import (
	"testing"
)

// Devices whose key hashes collide are still told apart: each replaces
// only its own earlier session, and removing one leaves the other bound.
func TestHubBindHashCollision(t *testing.T) {
	h := newHub()
	h.testHash = func(sessionKey) uint64 { return 7 } // every key collides
	mk := func(user string, id uint64) *session {
		s := &session{id: id, key: sessionKey{app: "a", user: user, device: "d"}}
		s.set(flagAuthed)
		h.AddConn(s)
		return s
	}
	a1, b1 := mk("alice", 1), mk("bob", 2)
	if old := h.Bind(a1); old != nil {
		t.Fatalf("first bind of alice replaced %v", old.id)
	}
	if old := h.Bind(b1); old != nil {
		t.Fatalf("bob (colliding with alice) replaced conn %d", old.id)
	}
	a2, b2 := mk("alice", 3), mk("bob", 4)
	if old := h.Bind(b2); old != b1 {
		t.Fatalf("bob's second login replaced %v, want conn 2", old)
	}
	if old := h.Bind(a2); old != a1 {
		t.Fatalf("alice's second login replaced %v, want conn 1", old)
	}
	// The replaced sessions close: neither unbinds the newer ones.
	h.Remove(a1)
	h.Remove(b1)
	// alice's slot is freed; bob's newer session, probed past it, is
	// found again by bob's next login.
	h.Remove(a2)
	b3 := mk("bob", 5)
	if old := h.Bind(b3); old != b2 {
		t.Fatalf("bob's third login replaced %v, want conn 4", old)
	}
	a3 := mk("alice", 6)
	if old := h.Bind(a3); old != nil {
		t.Fatalf("alice after her close replaced conn %d", old.id)
	}
	h.Remove(b2)
	h.Remove(b3)
	h.Remove(a3)
	for i := range h.byKey {
		if n := h.byKey[i].t.len(); n != 0 {
			t.Fatalf("shard %d holds %d entries after every session closed", i, n)
		}
	}
	if n := h.Len(); n != 0 {
		t.Fatalf("Len %d after every session closed", n)
	}
}

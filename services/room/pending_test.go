package main

import (
	"errors"
	"testing"
)

func TestPendingStatePages(t *testing.T) {
	var p pendingState
	const window = 4
	after, ok := p.start()
	if !ok || after != 0 {
		t.Fatalf("first pull: after %d ok %v", after, ok)
	}
	if _, ok := p.start(); ok {
		t.Fatal("second pull started while the first runs")
	}
	// A full page of 4 opens a cursor at its last id.
	for _, id := range []uint64{10, 11, 12, 13} {
		if p.admit(id, window) != admitOK {
			t.Fatalf("admit %d refused", id)
		}
	}
	if n := p.done(13, true, nil); n != 0 {
		t.Fatalf("done = %d", n)
	}
	if p.ack([]uint64{10}, window, 0) {
		t.Fatal("next page due with 3 of 4 in flight")
	}
	// An id not in flight does not count.
	if p.ack([]uint64{99}, window, 0) {
		t.Fatal("an unknown ack made room")
	}
	if !p.ack([]uint64{11}, window, 0) {
		t.Fatal("next page not due with half the window free")
	}
	after, ok = p.start()
	if !ok || after != 13 {
		t.Fatalf("next pull: after %d ok %v, want after 13", after, ok)
	}
	if p.ack([]uint64{12, 13}, window, 0) {
		t.Fatal("a pull was due while one runs")
	}
	// A short page ends the backlog: later pulls start from the beginning.
	p.done(14, false, nil)
	if p.ack([]uint64{14}, window, 0) {
		t.Fatal("a page was due with the backlog done")
	}
	if in := p.inflightLocked(); in != nil {
		t.Fatalf("empty window still holds %v", in)
	}
	if after, _ := p.start(); after != 0 {
		t.Fatalf("pull after the backlog: after %d", after)
	}
	// Failures count up, and reset on success.
	if n := p.done(0, false, errors.New("saver down")); n != 1 {
		t.Fatalf("first failure = %d", n)
	}
	p.start()
	if n := p.done(0, false, errors.New("saver down")); n != 2 {
		t.Fatalf("second failure = %d", n)
	}
	p.start()
	p.done(0, false, nil)
	p.start()
	if n := p.done(0, false, errors.New("again")); n != 1 {
		t.Fatalf("failure after a success = %d", n)
	}
}

func TestPendingWindow(t *testing.T) {
	var p pendingState
	const window = 2
	if p.admit(1, window) != admitOK || p.admit(1, window) != admitDuplicate {
		t.Fatal("a second offer of an id in flight was not a duplicate")
	}
	if p.admit(2, window) != admitOK {
		t.Fatal("second id refused")
	}
	// A live push beyond the window is held back and asks for a pull once
	// the window has room.
	if p.admit(3, window) != admitFull {
		t.Fatal("third id admitted into a window of 2")
	}
	if !p.ack([]uint64{1, 2}, window, 0) {
		t.Fatal("no pull due after a held-back push and a free window")
	}
	if _, ok := p.start(); !ok || p.behind {
		t.Fatal("starting the pull did not clear behind")
	}
	p.forget(3)
	// Until saver has surely been told of the ack, a pull may return the
	// id again: it is still not written twice.
	if p.admit(1, window) != admitDuplicate {
		t.Fatal("an id acked moments ago was admitted again")
	}
	p.expireAcked(1)
	if p.admit(1, window) != admitDuplicate {
		t.Fatal("acked ids forgotten after one report flush")
	}
	p.expireAcked(2)
	if p.w != nil {
		t.Fatalf("window kept with nothing in flight or acked: %+v", *p.w)
	}
	if p.admit(1, window) != admitOK || len(p.w.acked) != 0 {
		t.Fatal("acked ids kept after two report flushes")
	}
}

// A full page of messages all acked (their reports not yet at saver)
// sends nothing and leaves the window empty: the next page is due at once,
// since no ack is coming to ask for it.
func TestPendingPageOfDuplicatesIsDueAgain(t *testing.T) {
	const limit = 4
	var p pendingState
	for id := uint64(1); id <= limit; id++ {
		if p.admit(id, limit) != admitOK {
			t.Fatalf("admit %d", id)
		}
	}
	p.ack([]uint64{1, 2, 3, 4}, limit, 0)
	after, ok := p.start()
	if !ok || after != 0 {
		t.Fatalf("start = %d, %v", after, ok)
	}
	// The pull returns ids 1..4 again: every one is a duplicate.
	for id := uint64(1); id <= limit; id++ {
		if p.admit(id, limit) != admitDuplicate {
			t.Fatalf("id %d not recognised as acked", id)
		}
	}
	p.done(limit, true, nil)
	if !p.due(limit) {
		t.Fatal("a full page of duplicates left the next page waiting for an ack that cannot come")
	}
	if after, ok := p.start(); !ok || after != limit {
		t.Fatalf("next pull starts after %d (%v), want %d", after, ok, limit)
	}
	p.done(0, false, nil)
	if p.due(limit) {
		t.Fatal("the backlog ended but another pull is due")
	}
}

package main

import (
	"errors"
	"testing"
)

func TestPendingStatePages(t *testing.T) {
	var p pendingState
	after, ok := p.start()
	if !ok || after != 0 {
		t.Fatalf("first pull: after %d ok %v", after, ok)
	}
	if _, ok := p.start(); ok {
		t.Fatal("second pull started while the first runs")
	}
	// A full page of 4 opens a cursor at its last id.
	if n := p.done([]uint64{10, 11, 12, 13}, true, nil); n != 0 {
		t.Fatalf("done = %d", n)
	}
	if p.acked([]uint64{10}, 4) {
		t.Fatal("next page due after 1 of 4 acked")
	}
	// An id past the page (a live push) does not count.
	if p.acked([]uint64{99}, 4) {
		t.Fatal("a live push's ack counted against the page")
	}
	if !p.acked([]uint64{11}, 4) {
		t.Fatal("next page not due after half the page acked")
	}
	after, ok = p.start()
	if !ok || after != 13 {
		t.Fatalf("next pull: after %d ok %v, want after 13", after, ok)
	}
	if p.acked([]uint64{12, 13}, 4) {
		t.Fatal("a pull was due while one runs")
	}
	// A short page ends the backlog: later pulls start from the beginning.
	p.done([]uint64{14}, false, nil)
	if p.acked([]uint64{14}, 4) {
		t.Fatal("a page was due with the backlog done")
	}
	if after, _ := p.start(); after != 0 {
		t.Fatalf("pull after the backlog: after %d", after)
	}
	// Failures count up, and reset on success.
	if n := p.done(nil, false, errors.New("saver down")); n != 1 {
		t.Fatalf("first failure = %d", n)
	}
	p.start()
	if n := p.done(nil, false, errors.New("saver down")); n != 2 {
		t.Fatalf("second failure = %d", n)
	}
	p.start()
	p.done(nil, false, nil)
	p.start()
	if n := p.done(nil, false, errors.New("again")); n != 1 {
		t.Fatalf("failure after a success = %d", n)
	}
}

package main

import (
	"sync"
	"testing"
	"time"
)

// advance fires a callback at the first tick at or after its delay, never
// before, and one beyond a revolution only once its time has come.
func TestLaterQueueOrderAndRevolutions(t *testing.T) {
	q := newLaterQueue(10*time.Millisecond, 8) // one revolution: 70 ms ahead at most
	base := q.base
	var mu sync.Mutex
	var fired []string
	add := func(name string, d time.Duration) {
		q.mu.Lock()
		q.insertLocked(laterEntry{at: base + int64(d), f: func() {
			mu.Lock()
			fired = append(fired, name)
			mu.Unlock()
		}})
		q.mu.Unlock()
	}
	add("a", 25*time.Millisecond)
	add("b", 5*time.Millisecond)
	add("far", 200*time.Millisecond)
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), fired...)
	}
	q.advance(base + int64(9*time.Millisecond))
	if len(got()) != 0 {
		t.Fatalf("fired before the first tick: %v", got())
	}
	q.advance(base + int64(10*time.Millisecond))
	if g := got(); len(g) != 1 || g[0] != "b" {
		t.Fatalf("after 10 ms fired %v, want [b]", g)
	}
	q.advance(base + int64(30*time.Millisecond))
	if g := got(); len(g) != 2 || g[1] != "a" {
		t.Fatalf("after 30 ms fired %v, want [b a]", g)
	}
	q.advance(base + int64(190*time.Millisecond))
	if g := got(); len(g) != 2 {
		t.Fatalf("after 190 ms fired %v: far fired early", g)
	}
	q.advance(base + int64(200*time.Millisecond))
	if g := got(); len(g) != 3 || g[2] != "far" {
		t.Fatalf("after 200 ms fired %v, want far last", g)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len %d after all fired", n)
	}
}

// A running queue fires After callbacks by itself; Stop is idempotent and
// fine on a queue never started.
func TestLaterQueueRuns(t *testing.T) {
	q := newLaterQueue(time.Millisecond, 64)
	q.Start()
	done := make(chan struct{})
	q.After(5*time.Millisecond, func() { close(done) })
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("After callback never ran")
	}
	q.Stop()
	q.Stop()
	newLaterQueue(time.Millisecond, 8).Stop()
}

// With nothing waiting the ticker parks; After wakes it, and a callback
// added after a long idle spell fires on time, not after the ticker walked
// the slots it slept through.
func TestLaterQueueParksWhenEmpty(t *testing.T) {
	q := newLaterQueue(time.Millisecond, 64)
	q.Start()
	defer q.Stop()
	idle := func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.idle
	}
	waitFor(t, "the empty queue's ticker parks", idle)
	for round := range 3 {
		done := make(chan struct{})
		q.After(2*time.Millisecond, func() { close(done) })
		if idle() {
			t.Fatalf("round %d: still parked after After", round)
		}
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: callback never ran after the ticker parked", round)
		}
		waitFor(t, "the ticker parks again", idle)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len %d", n)
	}
}

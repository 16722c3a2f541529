package main

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
)

// The key table agrees with a plain map through random puts and removes,
// with a hash space small enough that most keys collide and probe runs
// wrap around the table.
func TestKeyTableMatchesMap(t *testing.T) {
	h := newHub()
	h.testHash = func(k sessionKey) uint64 {
		n, _ := strconv.Atoi(k.user)
		return uint64(n%5) * hubShards // one shard, five homes
	}
	ks := &h.byKey[0]
	want := map[sessionKey]*session{}
	rng := rand.New(rand.NewPCG(1, 2))
	var id uint64
	for step := 0; step < 20000; step++ {
		key := sessionKey{app: "a", user: strconv.Itoa(rng.IntN(40)), device: "d"}
		sum := h.sum(key)
		if rng.IntN(3) > 0 {
			id++
			s := &session{id: id, key: key}
			if got, exp := ks.t.put(h, sum, s), want[key]; got != exp {
				t.Fatalf("step %d: put %v replaced %p, want %p", step, key, got, exp)
			}
			want[key] = s
		} else if cur := want[key]; cur != nil {
			ks.t.remove(h, sum, cur)
			delete(want, key)
		}
		if ks.t.len() != len(want) {
			t.Fatalf("step %d: table holds %d, want %d", step, ks.t.len(), len(want))
		}
		for k, s := range want {
			if got := ks.t.get(h.sum(k), k); got != s {
				t.Fatalf("step %d: get %v = %p, want %p", step, k, got, s)
			}
		}
	}
	for k, s := range want {
		ks.t.remove(h, h.sum(k), s)
	}
	if ks.t.len() != 0 || len(ks.t.slots) != keyTableMin {
		t.Fatalf("emptied table: %d entries in %d slots", ks.t.len(), len(ks.t.slots))
	}
}

// TestHubIndexBytes measures the heap the device index costs per
// authenticated session, against the Go map of hash to session it
// replaced (go test -run TestHubIndexBytes -v).
func TestHubIndexBytes(t *testing.T) {
	for _, n := range []int{18_000, 100_000} {
		hubIndexBytes(t, n)
	}
}

func hubIndexBytes(t *testing.T, n int) {
	sessions := make([]*session, n)
	for i := range sessions {
		s := &session{id: uint64(i + 1), key: sessionKey{app: "a", user: strconv.Itoa(i), device: "d"}}
		s.set(flagAuthed)
		sessions[i] = s
	}
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	// Each index is built twice, alternately, and the second builds are
	// compared: the first build of a process measures a few bytes more
	// per entry whichever index it is.
	var table, mapped float64
	for range 2 {
		// The former index: one map of hash to session per shard.
		h := newHub()
		var maps [hubShards]map[uint64]*session
		for i := range maps {
			maps[i] = map[uint64]*session{}
		}
		before := heap()
		for _, s := range sessions {
			sum := h.sum(s.key)
			maps[sum%hubShards][sum] = s
		}
		mapped = float64(heap()-before) / float64(n)
		runtime.KeepAlive(maps)

		h = newHub()
		before = heap()
		for _, s := range sessions {
			h.Bind(s)
		}
		table = float64(heap()-before) / float64(n)
		runtime.KeepAlive(h)
	}
	t.Logf("device index at %d sessions: key table %.1f B/session, map of hash %.1f B/session", n, table, mapped)
	if table >= mapped {
		t.Errorf("key table %.1f B/session is no smaller than the map's %.1f", table, mapped)
	}
}

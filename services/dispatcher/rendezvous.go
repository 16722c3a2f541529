package main

import (
	"hash/fnv"
	"sort"
)

// roomEntry is a room as the dispatcher offers it.
type roomEntry struct {
	ID       string
	Endpoint string // host:port of the client TCP listener
	IDC      string
	// Load is what the room publishes (live connections).
	Load int64
	// Peer marks a room learnt from a peer IDC's dispatcher: always after
	// the local ones, whatever IDC name it carries.
	Peer bool
}

// rankPolicy is what ordering depends on besides the key.
type rankPolicy struct {
	localIDC string
	failed   map[string]bool
	// overload is the load at or above which a room goes after the
	// others of its group; 0 turns it off.
	overload int64
}

// score is the rendezvous (highest random weight) weight of room for key.
// FNV alone mixes the last bytes poorly, so a SplitMix64 finalizer spreads
// keys that differ only in their tail. It must be the same in every
// dispatcher instance and version: never seed it per process.
func score(key, roomID string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(roomID))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// userKey is what affinity is computed on: the same user of the same app
// lands on the same room from any device, so all of a user's connections
// tend to share a room.
func userKey(app, user string) string { return app + "\x00" + user }

// rank orders rooms for key: rooms of localIDC before the others (another
// IDC is the fallback, not the first choice), within each group overloaded
// rooms after the rest, then by descending rendezvous score; endpoints the
// client already failed on go last of all. Adding or removing a room moves
// only the users whose first choice it is or was, and an overloaded room
// keeps its users' affinity: they come back once its load drops.
func rank(rooms []roomEntry, key, localIDC string, failed map[string]bool) []string {
	return rankWith(rooms, key, rankPolicy{localIDC: localIDC, failed: failed})
}

func rankWith(rooms []roomEntry, key string, p rankPolicy) []string {
	type scored struct {
		e      roomEntry
		s      uint64
		remote bool
		over   bool
		failed bool
	}
	list := make([]scored, len(rooms))
	for i, r := range rooms {
		list[i] = scored{
			e: r, s: score(key, r.ID),
			remote: r.Peer || (p.localIDC != "" && r.IDC != p.localIDC),
			over:   p.overload > 0 && r.Load >= p.overload,
			failed: p.failed[r.Endpoint],
		}
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.failed != b.failed {
			return !a.failed
		}
		if a.remote != b.remote {
			return !a.remote
		}
		if a.over != b.over {
			return !a.over
		}
		if a.s != b.s {
			return a.s > b.s
		}
		return a.e.ID < b.e.ID
	})
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.e.Endpoint
	}
	return out
}

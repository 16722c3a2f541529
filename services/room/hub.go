package main

import (
	"hash/maphash"
	"sync"
)

// hubShards spreads the index over independent locks so logins, closes and
// pushes on different connections rarely contend.
const hubShards = 64

// sessionKey identifies one device of one user of one app.
type sessionKey struct {
	app, user, device string
}

// hub is the room's local index of connections: every open one by
// connection id (pushes, kicks, draining), authenticated ones also by device
// (a second login of the same device replaces the first).
//
// The device index is a table of session pointers keyed by a 64-bit hash
// of the sessionKey (hub_keytable.go): a slot holds 8 bytes, not the key
// (56) nor a map's hash and pointer (16 plus control bytes), which at
// hundreds of thousands of sessions is tens of bytes per connection. The
// session holds its key, so a hit is checked against it, and devices whose
// hashes collide probe on to their own slots.
//
// The two indexes stay separate: a session is found by connection id
// before it is authenticated, after a newer login of its device replaced
// it (it is still open until its kick goes out) and at the id of the
// session it resumed (hub_flash.go), none of which the device index can
// answer; and a login must find the device's session without knowing its
// connection id.
type hub struct {
	seed maphash.Seed
	// testHash replaces the key hash in tests that need collisions.
	testHash func(sessionKey) uint64
	byID     [hubShards]idShard
	byKey    [hubShards]keyShard
}

type idShard struct {
	mu sync.RWMutex
	m  map[uint64]*session
}

type keyShard struct {
	mu sync.Mutex
	t  keyTable
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed()}
	for i := range h.byID {
		h.byID[i].m = map[uint64]*session{}
	}
	return h
}

// keyHash returns k's hash and the shard it lives in.
func (h *hub) keyHash(k sessionKey) (uint64, *keyShard) {
	sum := h.sum(k)
	return sum, &h.byKey[sum%hubShards]
}

// sum returns k's hash.
func (h *hub) sum(k sessionKey) uint64 {
	if h.testHash != nil {
		return h.testHash(k)
	}
	var mh maphash.Hash
	mh.SetSeed(h.seed)
	mh.WriteString(k.app)
	mh.WriteByte(0)
	mh.WriteString(k.user)
	mh.WriteByte(0)
	mh.WriteString(k.device)
	return mh.Sum64()
}

// AddConn indexes a newly opened connection by its id.
func (h *hub) AddConn(s *session) {
	is := &h.byID[s.id%hubShards]
	is.mu.Lock()
	is.m[s.id] = s
	is.mu.Unlock()
}

// Bind indexes an authenticated session by device and returns the session
// it replaces there, if any (the caller kicks it).
func (h *hub) Bind(s *session) (replaced *session) {
	sum, ks := h.keyHash(s.key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.t.put(h, sum, s)
}

// Remove drops s from the index; a newer session of the same device stays.
func (h *hub) Remove(s *session) {
	if s.isAuthed() {
		sum, ks := h.keyHash(s.key)
		ks.mu.Lock()
		ks.t.remove(h, sum, s)
		ks.mu.Unlock()
	}
	id := s.indexID() // a resumed session sits at its register id (hub_flash.go)
	is := &h.byID[id%hubShards]
	is.mu.Lock()
	if is.m[id] == s {
		delete(is.m, id)
	}
	is.mu.Unlock()
}

// Get returns the connection of an id (authenticated or not).
func (h *hub) Get(id uint64) (*session, bool) {
	is := &h.byID[id%hubShards]
	is.mu.RLock()
	s, ok := is.m[id]
	is.mu.RUnlock()
	return s, ok
}

// Len returns the number of open connections.
func (h *hub) Len() int {
	n := 0
	for i := range h.byID {
		h.byID[i].mu.RLock()
		n += len(h.byID[i].m)
		h.byID[i].mu.RUnlock()
	}
	return n
}

// Range calls f for every open connection, one shard at a time, without holding a
// lock during f (f may close sessions, which removes them).
func (h *hub) Range(f func(*session)) {
	var buf []*session
	for i := range h.byID {
		is := &h.byID[i]
		is.mu.RLock()
		buf = buf[:0]
		for _, s := range is.m {
			buf = append(buf, s)
		}
		is.mu.RUnlock()
		for _, s := range buf {
			f(s)
		}
	}
}

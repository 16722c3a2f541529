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
type hub struct {
	seed  maphash.Seed
	byID  [hubShards]idShard
	byKey [hubShards]keyShard
}

type idShard struct {
	mu sync.RWMutex
	m  map[uint64]*session
}

type keyShard struct {
	mu sync.Mutex
	m  map[sessionKey]*session
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed()}
	for i := range h.byID {
		h.byID[i].m = map[uint64]*session{}
		h.byKey[i].m = map[sessionKey]*session{}
	}
	return h
}

func (h *hub) keyShard(k sessionKey) *keyShard {
	var mh maphash.Hash
	mh.SetSeed(h.seed)
	mh.WriteString(k.app)
	mh.WriteByte(0)
	mh.WriteString(k.user)
	mh.WriteByte(0)
	mh.WriteString(k.device)
	return &h.byKey[mh.Sum64()%hubShards]
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
	ks := h.keyShard(s.key)
	ks.mu.Lock()
	replaced = ks.m[s.key]
	ks.m[s.key] = s
	ks.mu.Unlock()
	return replaced
}

// Remove drops s from the index; a newer session of the same device stays.
func (h *hub) Remove(s *session) {
	if s.isAuthed() {
		ks := h.keyShard(s.key)
		ks.mu.Lock()
		if ks.m[s.key] == s {
			delete(ks.m, s.key)
		}
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

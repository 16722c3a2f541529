package main

// Hub moves for flash reconnects (resume.go). An authenticated session is
// indexed by its register connection id (regConnID), which a resumed
// session inherits from the one it resumes; for every other session that
// is its own id.

// regConnID is the connection id register knows s by: its own, or for a
// resumed session the one of the session it resumed (regID).
func (s *session) regConnID() uint64 {
	if s.regID != 0 {
		return s.regID
	}
	return s.id
}

// indexID is the id s is indexed by in byID.
func (s *session) indexID() uint64 {
	if s.isAuthed() {
		return s.regConnID()
	}
	return s.id
}

// replace puts parked placeholder p where the closing session s is, by
// id and by device; false (nothing changed) when s no longer holds its
// device (a newer login replaced it).
func (h *hub) replace(s, p *session) bool {
	sum, ks := h.keyHash(s.key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.t.get(sum, s.key) != s {
		return false
	}
	is := &h.byID[p.id%hubShards]
	is.mu.Lock()
	if cur, ok := is.m[p.id]; !ok || cur == s {
		is.m[p.id] = p
	}
	is.mu.Unlock()
	ks.t.swap(sum, s.key, s, p)
	return true
}

// adopt moves s, not yet marked authenticated and indexed by its own id,
// to the id of parked p, which it takes over (s.regID is p's by now). The
// caller then binds s by device.
func (h *hub) adopt(s, p *session) {
	if s.id == p.id {
		return
	}
	is := &h.byID[s.id%hubShards]
	is.mu.Lock()
	if is.m[s.id] == s {
		delete(is.m, s.id)
	}
	is.mu.Unlock()
	ps := &h.byID[p.id%hubShards]
	ps.mu.Lock()
	ps.m[p.id] = s
	ps.mu.Unlock()
}

// current returns the session that holds device key, if any.
func (h *hub) current(key sessionKey) *session {
	sum, ks := h.keyHash(key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.t.get(sum, key)
}

// replaceLive points the entries of open session s (being handed over)
// at snap, which adopt then replaces with the resuming connection: s's
// own close finds none of them.
func (h *hub) replaceLive(s, snap *session) {
	id := s.indexID()
	is := &h.byID[id%hubShards]
	is.mu.Lock()
	if is.m[id] == s {
		is.m[id] = snap
	}
	is.mu.Unlock()
	sum, ks := h.keyHash(s.key)
	ks.mu.Lock()
	ks.t.swap(sum, s.key, s, snap)
	ks.mu.Unlock()
}

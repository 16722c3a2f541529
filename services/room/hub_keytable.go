package main

// keyTable is one hub shard's device index: an open-addressing hash table
// (linear probing) of session pointers, keyed by the hash of the session's
// own key. A slot is 8 bytes and holds no copy of the key or its hash: the
// session has its key, and the hash is computed again when an entry moves
// (growth, deletion). Against a Go map of hash to session (16-byte slots
// plus control bytes) this halves the index's bytes per authenticated
// connection, and devices whose hashes collide simply probe on, so no
// overflow map is needed.
//
// The caller holds the shard's lock. A session's key must not change while
// it is in the table.
type keyTable struct {
	slots []*session // len is 0 or a power of two
	n     int
}

const (
	// keyTableMin is the size of a table's first allocation.
	keyTableMin = 8
	// keyTableLoadNum/keyTableLoadDen is the load above which the table
	// doubles; it halves below a quarter of that (down to keyTableMin), so
	// a shard emptied by a mass disconnect gives its memory back.
	keyTableLoadNum = 3
	keyTableLoadDen = 4
)

// home is the slot a hash starts probing at. The low bits chose the shard
// (sum % hubShards), so the position uses the bits above them.
func (t *keyTable) home(sum uint64) int {
	return int((sum / hubShards) & uint64(len(t.slots)-1))
}

// find returns the slot of the session holding key, -1 for none.
func (t *keyTable) find(sum uint64, key sessionKey) int {
	if t.n == 0 {
		return -1
	}
	mask := len(t.slots) - 1
	for i := t.home(sum); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == nil {
			return -1
		}
		if s.key == key {
			return i
		}
	}
}

// get returns the session holding key, nil for none.
func (t *keyTable) get(sum uint64, key sessionKey) *session {
	if i := t.find(sum, key); i >= 0 {
		return t.slots[i]
	}
	return nil
}

// put makes s the session of its key and returns the one it replaced.
func (t *keyTable) put(h *hub, sum uint64, s *session) (replaced *session) {
	if i := t.find(sum, s.key); i >= 0 {
		replaced, t.slots[i] = t.slots[i], s
		return replaced
	}
	if (t.n+1)*keyTableLoadDen > len(t.slots)*keyTableLoadNum {
		t.resize(h, max(keyTableMin, 2*len(t.slots)))
	}
	t.insert(sum, s)
	return nil
}

// insert places s, whose key is not in the table, at its first free slot.
func (t *keyTable) insert(sum uint64, s *session) {
	mask := len(t.slots) - 1
	i := t.home(sum)
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = s
	t.n++
}

// swap puts n where old holds key; false when old does not.
func (t *keyTable) swap(sum uint64, key sessionKey, old, n *session) bool {
	if old == nil {
		return false
	}
	if i := t.find(sum, key); i >= 0 && t.slots[i] == old {
		t.slots[i] = n
		return true
	}
	return false
}

// remove drops s if it still holds its key (a newer session of the same
// key stays).
func (t *keyTable) remove(h *hub, sum uint64, s *session) {
	i := t.find(sum, s.key)
	if i < 0 || t.slots[i] != s {
		return
	}
	// Backward-shift deletion: pull later entries of the probe run into
	// the hole when the hole lies on their probe path, so lookups never
	// meet a gap before their entry and no tombstones are needed.
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j] != nil; j = (j + 1) & mask {
		k := t.home(h.sum(t.slots[j].key))
		// The entry at j may move to i unless its home lies cyclically
		// in (i, j].
		if (j > i && (k <= i || k > j)) || (j < i && k <= i && k > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = nil
	t.n--
	if len(t.slots) > keyTableMin && t.n*keyTableLoadDen*4 < len(t.slots)*keyTableLoadNum {
		t.resize(h, len(t.slots)/2)
	}
}

// resize rehashes every entry into a table of size slots (a power of two).
func (t *keyTable) resize(h *hub, size int) {
	old := t.slots
	if t.n == 0 {
		old = nil
	}
	t.slots, t.n = make([]*session, size), 0
	for _, s := range old {
		if s != nil {
			t.insert(h.sum(s.key), s)
		}
	}
}

// len returns the number of sessions in the table.
func (t *keyTable) len() int { return t.n }

package sdk

// dedup remembers the last size message ids handed to the Handler, evicting
// the oldest first. It is used by the one goroutine that reads frames, so it
// needs no lock.
type dedup struct {
	seen map[uint64]struct{}
	ring []uint64
	next int
	full bool
}

func newDedup(size int) *dedup {
	return &dedup{seen: make(map[uint64]struct{}, size), ring: make([]uint64, size)}
}

func (d *dedup) has(id uint64) bool {
	_, ok := d.seen[id]
	return ok
}

func (d *dedup) add(id uint64) {
	if d.has(id) {
		return
	}
	if d.full {
		delete(d.seen, d.ring[d.next])
	}
	d.ring[d.next] = id
	d.seen[id] = struct{}{}
	d.next++
	if d.next == len(d.ring) {
		d.next, d.full = 0, true
	}
}

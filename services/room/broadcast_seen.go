package main

import (
	"sync"

	"github.com/pushgw/pushgw/pkg/bcseq"
)

// Per-connection broadcast bookkeeping: two words per session (bseq,
// bmask), guarded by a striped lock on the room rather than a lock per
// session, because the connection count is the room's headline number.
//
// bseq is the highest broadcast seq this connection has been given (or
// reported having at login). Bits 0..62 of bmask record which of the 63
// seqs below bseq it was given too, so a broadcast that overtook another
// (two centers, a resend by the sweep, a catch-up racing a live one) still
// reaches it once, and only once. A seq more than 63 below bseq counts as
// given. Bit 63 is set while the login catch-up runs: live broadcasts skip
// the connection then and the catch-up's last read picks them up. The
// window arithmetic is pkg/bcseq's, which the SDK keeps for the client's
// side: the client reports the seqs of its window it lacks
// (broadcast_gaps), and the login starts with those not given.

const (
	seenStripes  = 256
	seenWindowMs = bcseq.Full
	catchingBit  = uint64(1) << 63
)

// seenLocks stripes the lock over sessions by connection id.
type seenLocks [seenStripes]sync.Mutex

func (l *seenLocks) of(s *session) *sync.Mutex { return &l[s.id%seenStripes] }

// login starts s's bookkeeping at the seq the client reported: everything
// up to it counts as given but the gaps the client reported (so the
// catch-up, which reads from bcseq.After(last, gaps), gives those), and
// live broadcasts wait for the catch-up.
func (l *seenLocks) login(s *session, last, gaps uint64) {
	mu := l.of(s)
	mu.Lock()
	s.bseq, s.bmask = last, bcseq.Start(last, gaps)|catchingBit
	mu.Unlock()
}

// caughtUp lets live broadcasts reach s again.
func (l *seenLocks) caughtUp(s *session) {
	mu := l.of(s)
	mu.Lock()
	s.bmask &^= catchingBit
	mu.Unlock()
}

// claim records that s is given seq and reports whether it should be sent:
// false when s already had it, or when live and s is still catching up
// (deferred).
func (l *seenLocks) claim(s *session, seq uint64, live bool) (send, deferred bool) {
	mu := l.of(s)
	mu.Lock()
	defer mu.Unlock()
	if live && s.bmask&catchingBit != 0 {
		return false, true
	}
	return markSeen(&s.bseq, &s.bmask, seq), false
}

// markSeen is claim's arithmetic on one (bseq, bmask) pair; bcseq keeps
// the catching bit as it is.
func markSeen(bseq, bmask *uint64, seq uint64) bool {
	return bcseq.Mark(bseq, bmask, seq)
}

// catching reports whether s still waits for its login catch-up.
func (l *seenLocks) catching(s *session) bool {
	mu := l.of(s)
	mu.Lock()
	defer mu.Unlock()
	return s.bmask&catchingBit != 0
}

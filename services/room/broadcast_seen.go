package main

import "sync"

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
// the connection then and the catch-up's last read picks them up.

const (
	seenStripes  = 256
	seenWindow   = 63
	seenWindowMs = uint64(1)<<seenWindow - 1
	catchingBit  = uint64(1) << 63
)

// seenLocks stripes the lock over sessions by connection id.
type seenLocks [seenStripes]sync.Mutex

func (l *seenLocks) of(s *session) *sync.Mutex { return &l[s.id%seenStripes] }

// login starts s's bookkeeping at the seq the client reported: everything
// up to it counts as given, and live broadcasts wait for the catch-up.
func (l *seenLocks) login(s *session, last uint64) {
	mu := l.of(s)
	mu.Lock()
	s.bseq, s.bmask = last, seenWindowMs|catchingBit
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

// markSeen is claim's arithmetic on one (bseq, bmask) pair.
func markSeen(bseq, bmask *uint64, seq uint64) bool {
	catching := *bmask & catchingBit
	mask := *bmask &^ catchingBit
	switch {
	case seq == 0 || seq == *bseq:
		return false
	case seq > *bseq:
		shift := seq - *bseq
		if shift > seenWindow {
			mask = 0
		} else {
			// The old highest becomes bit shift-1.
			mask = (mask<<shift | 1<<(shift-1)) & seenWindowMs
		}
		*bseq, *bmask = seq, mask|catching
		return true
	default:
		d := *bseq - seq - 1
		if d >= seenWindow || mask&(1<<d) != 0 {
			return false
		}
		*bmask |= 1 << d
		return true
	}
}

// catching reports whether s still waits for its login catch-up.
func (l *seenLocks) catching(s *session) bool {
	mu := l.of(s)
	mu.Lock()
	defer mu.Unlock()
	return s.bmask&catchingBit != 0
}

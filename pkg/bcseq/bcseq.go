// Package bcseq answers one question for the broadcast catch-up: which
// broadcast seqs in a 64-wide window were handled. The room (what it gave
// a connection) and the SDK (what the client handled) keep the same
// window, and the client reports it as Auth/Bind (last_broadcast_seq,
// broadcast_gaps) (docs/protocol.md §10.1).
//
// A window is two words: top, the highest seq handled, and a mask whose
// bit i (0..62) says seq top-1-i was handled too. Seqs more than 63 below
// top count as handled: the window forgets them. Bit 63 of the mask is
// never used here, so a caller may keep a flag of its own in it.
package bcseq

import "math/bits"

const (
	// Width is how many seqs below top the mask covers.
	Width = 63
	// Full is the mask with every seq of the window handled.
	Full = uint64(1)<<Width - 1
)

// Mark records seq as handled in (top, mask) and reports whether it was
// not handled before. Seq 0 is no broadcast. Bit 63 of mask is left as it
// is.
func Mark(top, mask *uint64, seq uint64) bool {
	flag := *mask &^ Full
	m := *mask & Full
	switch {
	case seq == 0 || seq == *top:
		return false
	case seq > *top:
		shift := seq - *top
		if shift > Width {
			m = 0
		} else {
			// The old top becomes bit shift-1.
			m = (m<<shift | 1<<(shift-1)) & Full
		}
		*top, *mask = seq, m|flag
		return true
	default:
		d := *top - seq - 1
		if d >= Width || m&(1<<d) != 0 {
			return false
		}
		*mask |= 1 << d
		return true
	}
}

// valid is the part of a window below top that names real seqs (1 and
// up): bits for seq 0 and below are no broadcast.
func valid(top uint64) uint64 {
	if top > Width {
		return Full
	}
	if top <= 1 {
		return 0
	}
	return uint64(1)<<(top-1) - 1
}

// Gaps is the broadcast_gaps a client reports for (top, mask): the seqs of
// the window below top that were not handled.
func Gaps(top, mask uint64) uint64 {
	return ^mask & valid(top)
}

// Start is the mask of a window built from a report (last, gaps): every
// seq up to last handled but the gaps. Bit 63 of gaps and bits naming no
// seq (last-1-i < 1) are ignored.
func Start(last, gaps uint64) uint64 {
	return Full &^ (gaps & valid(last))
}

// After is the seq a catch-up for the report (last, gaps) reads after:
// one below the lowest missing seq, or last when nothing is missing.
func After(last, gaps uint64) uint64 {
	g := gaps & valid(last)
	if g == 0 {
		return last
	}
	hi := uint64(63 - bits.LeadingZeros64(g)) // the lowest missing seq's bit
	return last - 1 - hi - 1
}

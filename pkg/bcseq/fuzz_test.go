package bcseq

import (
	"encoding/binary"
	"testing"
)

// FuzzWindow checks the window against a plain set of handled seqs: the
// start comes from a report (last, gaps), then seqs from data are marked.
// Invariants: Mark is true exactly once per seq of the window not yet
// handled; a report restarts the same window (Start(Gaps) == mask within
// the valid bits); After is at most top and every missing seq is above it.
func FuzzWindow(f *testing.F) {
	f.Add(uint64(7), uint64(1), []byte{5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint64(0), uint64(0), []byte{3, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, last, gaps uint64, data []byte) {
		last %= 1 << 40 // room for seqs above it
		top, mask := last, Start(last, gaps)
		// The model: the set of handled seqs; below top-Width all count.
		handled := map[uint64]bool{last: true}
		for i := range uint64(Width) {
			if last > i && mask&(1<<i) != 0 {
				handled[last-1-i] = true
			}
		}
		if After(last, gaps) > last {
			t.Fatalf("After(%d, %x) above last", last, gaps)
		}
		for len(data) >= 8 {
			seq := last + binary.LittleEndian.Uint64(data)%200
			seq = max(seq, 100) - 100
			data = data[8:]
			want := seq != 0 && !handled[seq] && (seq > top || top-seq <= Width)
			got := Mark(&top, &mask, seq)
			if got != want {
				t.Fatalf("Mark(%d) = %v, want %v (top %d mask %x)", seq, got, want, top, mask)
			}
			if got {
				handled[seq] = true
			}
			if mask&^Full != 0 {
				t.Fatalf("bit 63 set")
			}
			g := Gaps(top, mask)
			if Start(top, g)&valid(top) != mask&valid(top) {
				t.Fatalf("report (%d, %x) does not restart mask %x", top, g, mask)
			}
			a := After(top, g)
			for i := range uint64(Width) {
				if g&(1<<i) != 0 {
					if s := top - 1 - i; s <= a || handled[s] {
						t.Fatalf("gap %d: after %d, handled %v", s, a, handled[s])
					}
				}
			}
		}
	})
}

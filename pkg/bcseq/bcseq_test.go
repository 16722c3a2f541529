package bcseq

import "testing"

func TestMark(t *testing.T) {
	var top, mask uint64 = 10, Full
	steps := []struct {
		seq  uint64
		want bool
	}{
		{10, false}, {9, false}, {0, false}, // at or below the start: handled
		{12, true}, {11, true}, {11, false}, {12, false},
		{100, true}, {12, false}, // fell out of the window
		{99, true}, {37, true}, {36, false}, // 37 is 100-1-62, the last bit
	}
	for i, st := range steps {
		if got := Mark(&top, &mask, st.seq); got != st.want {
			t.Fatalf("step %d: Mark(%d) = %v, want %v (top %d mask %x)", i, st.seq, got, st.want, top, mask)
		}
	}
}

func TestMarkKeepsBit63(t *testing.T) {
	var top, mask uint64 = 5, Full | 1<<63
	Mark(&top, &mask, 7)
	Mark(&top, &mask, 200)
	Mark(&top, &mask, 199)
	if mask&(1<<63) == 0 {
		t.Fatalf("bit 63 lost: %x", mask)
	}
}

// TestGapRoundTrip: handled 5 and 7 but not 6 after a start at 4 reports
// last 7 with bit 0 (seq 6) missing; the report's window restarts the
// same, and its catch-up reads after 5.
func TestGapRoundTrip(t *testing.T) {
	var top, mask uint64 = 4, Full
	Mark(&top, &mask, 5)
	Mark(&top, &mask, 7)
	g := Gaps(top, mask)
	if top != 7 || g != 1 {
		t.Fatalf("report (%d, %b), want (7, 1)", top, g)
	}
	if got := Start(top, g); got != Full&^1 {
		t.Fatalf("Start %x", got)
	}
	if got := After(top, g); got != 5 {
		t.Fatalf("After %d, want 5", got)
	}
	if got := After(7, 0); got != 7 {
		t.Fatalf("After without gaps %d, want 7", got)
	}
}

func TestSmallSeqs(t *testing.T) {
	// A fresh window (0) that handled 3 misses 1 and 2, not 0 or below.
	var top, mask uint64 = 0, Full
	Mark(&top, &mask, 3)
	if g := Gaps(top, mask); g != 0b11 {
		t.Fatalf("gaps %b, want 11", g)
	}
	if a := After(3, 0b11); a != 0 {
		t.Fatalf("After %d, want 0", a)
	}
	// Bits naming seq 0 or less, and bit 63, are ignored.
	if a := After(3, ^uint64(0)); a != 0 {
		t.Fatalf("After %d, want 0", a)
	}
	if a := After(100, 1<<63); a != 100 {
		t.Fatalf("bit 63 not ignored: After %d", a)
	}
	if m := Start(1, ^uint64(0)); m != Full {
		t.Fatalf("Start(1, all) %x, want Full", m)
	}
}

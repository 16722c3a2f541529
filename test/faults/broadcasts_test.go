package faults

import (
	"errors"
	"testing"
)

// The broadcast checker counts per (broadcast, client) pair.
func TestBcastChecker(t *testing.T) {
	c := newBcastChecker([]string{"u1", "u2"})
	c.attempted("b1")
	c.finished("b1", 11, nil)
	c.attempted("b2")
	c.finished("b2", 12, nil)
	c.attempted("b3")
	c.finished("b3", 0, errors.New("boom"))
	c.delivered("b1", "u1", 11)
	c.delivered("b1", "u2", 11)
	c.delivered("b2", "u1", 12)
	c.delivered("b2", "u1", 12) // twice to u1, never to u2
	c.delivered("b3", "u2", 13) // not acknowledged, arrived anyway
	c.delivered("b9", "u1", 19) // never sent
	c.delivered("b1", "u1", 99) // wrong id
	if n := c.missing(); n != 1 {
		t.Fatalf("missing %d, want 1 (b2 to u2)", n)
	}
	r := c.result()
	if r.Acknowledged != 2 || r.Failed != 1 || r.Expected != 4 || r.Lost != 1 || r.Duplicated != 2 || r.Unexpected != 2 || r.Recovered != 1 || r.passed() {
		t.Fatalf("%+v", r)
	}
}

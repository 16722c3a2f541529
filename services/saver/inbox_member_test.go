package main

import (
	"fmt"
	"math"
	"testing"
)

// member is the Redis layout's %020d: members written by older savers and
// by this one must be the same strings.
func TestMemberIsZeroPadded(t *testing.T) {
	for _, id := range []uint64{0, 1, 9, 10, 1 << 53, 1<<53 + 1, newID(), math.MaxUint64 - 1, math.MaxUint64} {
		if got, want := member(id), fmt.Sprintf("%020d", id); got != want {
			t.Errorf("member(%d) = %q, want %q", id, got, want)
		}
	}
}

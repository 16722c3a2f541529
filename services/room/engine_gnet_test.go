package main

import "testing"

// A room leaves one P to gRPC, pools and the collector, and never runs
// without a loop.
func TestGnetLoops(t *testing.T) {
	for _, c := range []struct{ procs, want int }{{1, 1}, {2, 1}, {4, 3}, {16, 15}} {
		if got := gnetLoops(c.procs); got != c.want {
			t.Errorf("gnetLoops(%d) = %d, want %d", c.procs, got, c.want)
		}
	}
}

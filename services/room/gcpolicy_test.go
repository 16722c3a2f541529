package main

import "testing"

// A room config built without flags gets the room's GC target, not Go's.
func TestGCPercentDefault(t *testing.T) {
	var c config
	c.setGCDefault()
	if err := c.gc.Validate(); err != nil || c.gc.Percent != defaultGCPercent {
		t.Fatalf("zero config: percent %d, err %v; want %d, nil", c.gc.Percent, err, defaultGCPercent)
	}
}

package main

import "testing"

func TestGCConfigValidate(t *testing.T) {
	var c gcConfig // built without flags: the default
	if err := c.validate(); err != nil || c.percent != defaultGCPercent {
		t.Fatalf("zero config: percent %d, err %v; want %d, nil", c.percent, err, defaultGCPercent)
	}
	for _, bad := range []int{-1, minGCPercent - 1, maxGCPercent + 1} {
		c := gcConfig{percent: bad}
		if c.validate() == nil {
			t.Errorf("-gc-percent %d accepted", bad)
		}
	}
	for _, ok := range []int{minGCPercent, 100, maxGCPercent} {
		c := gcConfig{percent: ok}
		if err := c.validate(); err != nil {
			t.Errorf("-gc-percent %d: %v", ok, err)
		}
	}
}

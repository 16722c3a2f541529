package limits

import (
	"strings"
	"testing"
)

func TestCheckTag(t *testing.T) {
	for _, tc := range []struct {
		tag string
		ok  bool
	}{
		{"news", true},
		{"vip/北京:2026", true},
		{strings.Repeat("t", MaxTagLen), true},
		{"", false},
		{strings.Repeat("t", MaxTagLen+1), false},
		{"bad\xff", false},
		{"tab\there", false},
		{"nul\x00", false},
		{"c1\u0085", false},
	} {
		if err := CheckTag(tc.tag); (err == nil) != tc.ok {
			t.Errorf("CheckTag(%q) = %v, want ok=%v", tc.tag, err, tc.ok)
		}
	}
}

package limits

import (
	"strings"
	"testing"
)

func TestCheckUser(t *testing.T) {
	for _, tc := range []struct {
		app, user string
		ok        bool
	}{
		{"demo", "alice", true},
		{"", "alice", false},
		{"demo", "", false},
		{strings.Repeat("a", MaxAppLen), strings.Repeat("u", MaxUserLen), true},
		{strings.Repeat("a", MaxAppLen+1), "u", false},
		{"demo", strings.Repeat("u", MaxUserLen+1), false},
	} {
		if err := CheckUser(tc.app, tc.user); (err == nil) != tc.ok {
			t.Errorf("CheckUser(%d bytes, %d bytes) = %v, want ok=%v", len(tc.app), len(tc.user), err, tc.ok)
		}
	}
	if CheckDevice("") != nil || CheckDevice(strings.Repeat("d", MaxDeviceLen)) != nil || CheckDevice(strings.Repeat("d", MaxDeviceLen+1)) == nil {
		t.Error("CheckDevice limits wrong")
	}
}

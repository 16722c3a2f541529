package main

import "testing"

func TestRowPlaceholders(t *testing.T) {
	for _, c := range []struct {
		rows, width int
		want        string
	}{
		{0, 3, ""},
		{1, 1, "(?)"},
		{1, 3, "(?,?,?)"},
		{3, 2, "(?,?),(?,?),(?,?)"},
	} {
		if got := rowPlaceholders(c.rows, c.width); got != c.want {
			t.Errorf("rowPlaceholders(%d, %d) = %q, want %q", c.rows, c.width, got, c.want)
		}
	}
}

package main

import (
	"strings"
	"testing"
)

func TestParsePeerRooms(t *testing.T) {
	rooms, err := parsePeerRooms([]byte(`{"idc":"dc2","version":7,"rooms":[{"id":"b1","endpoint":"10.0.0.1:7300","idc":"dc2","load":5}]}`))
	if err != nil || len(rooms) != 1 || rooms[0].ID != "b1" || rooms[0].Load != 5 || !rooms[0].Peer {
		t.Fatalf("got %+v, %v", rooms, err)
	}
	for _, bad := range []string{
		``, `[]`, `{"rooms":[{"id":"","endpoint":"1.2.3.4:5"}]}`,
		`{"rooms":[{"id":"r","endpoint":"nohost"}]}`,
		`{"rooms":[{"id":"r","endpoint":":7300"}]}`,
		`{"rooms":[{"id":"` + strings.Repeat("x", maxRoomIDLen+1) + `","endpoint":"1.2.3.4:5"}]}`,
		`{"rooms":[` + strings.Repeat(`{"id":"r","endpoint":"1.2.3.4:5"},`, maxPeerRooms) + `{"id":"r","endpoint":"1.2.3.4:5"}]}`,
	} {
		if r, err := parsePeerRooms([]byte(bad)); err == nil {
			t.Fatalf("%.80q accepted: %+v", bad, r)
		}
	}
}

// FuzzPeerRooms feeds arbitrary peer answers: an error or a bounded list of
// valid peer rooms, never a panic.
func FuzzPeerRooms(f *testing.F) {
	for _, s := range []string{
		`{"idc":"dc2","version":7,"rooms":[{"id":"b1","endpoint":"10.0.0.1:7300","load":5}]}`,
		`{"rooms":[]}`, `{"rooms":null}`, `{}`, ``, `{"rooms":[{"id":"r","endpoint":"[::1]:1"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rooms, err := parsePeerRooms(body)
		if err != nil {
			if rooms != nil {
				t.Fatalf("rooms %+v with error %v", rooms, err)
			}
			return
		}
		if len(rooms) > maxPeerRooms {
			t.Fatalf("%d rooms", len(rooms))
		}
		for _, r := range rooms {
			if r.ID == "" || r.Endpoint == "" || !r.Peer {
				t.Fatalf("room %+v", r)
			}
		}
	})
}

func TestParseConfigPeers(t *testing.T) {
	c, err := parseConfig([]string{"-peers", "http://10.0.0.2:7080, https://disp.idc3"})
	if err != nil || len(c.Peers) != 2 || c.Overload != defaultOverload || c.IPRate != defaultIPRate {
		t.Fatalf("got %+v, %v", c, err)
	}
	for _, bad := range [][]string{
		{"-peers", "10.0.0.2:7080"}, {"-peers", "ftp://x"}, {"-peers", "http://u:p@x:7080"}, {"-overload", "-1"},
		{"-peer-timeout", "0s"}, {"-ip-rate", "-1"}, {"-ip-burst", "0"},
	} {
		if _, err := parseConfig(bad); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
}

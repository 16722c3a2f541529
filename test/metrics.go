package test

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ScrapeAdmin reads a service's admin /metrics into a map keyed by the
// series as printed (name, or name{labels}).
func ScrapeAdmin(t testing.TB, admin string) map[string]float64 {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: status %d", admin, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", admin, err)
	}
	return out
}

// AdminValue returns one series of a service's /metrics; a missing one
// fails the test.
func AdminValue(t testing.TB, admin, series string) float64 {
	t.Helper()
	m := ScrapeAdmin(t, admin)
	v, ok := m[series]
	if !ok {
		t.Fatalf("%s: no series %s in /metrics", admin, series)
	}
	return v
}

// RoomsValue sums one series over every running room of c (a series a room
// has not exported yet counts as 0), for waits on "some room did X" when a
// client may have landed on either room.
func (c *Cluster) RoomsValue(t testing.TB, series string) float64 {
	t.Helper()
	var sum float64
	for name, p := range c.Procs {
		if !strings.HasPrefix(name, "room-") {
			continue
		}
		sum += ScrapeAdmin(t, p.Admin)[series]
	}
	return sum
}

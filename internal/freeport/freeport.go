// Package freeport hands out free loopback TCP ports to tests that start
// server processes, which must be told their port up front.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

const (
	// Ports come from below the Linux ephemeral range (32768+) so they do
	// not clash with the outgoing connections of other tests.
	portMin = 20000
	portMax = 32000
	// tries bounds the random search; thousands of ports are free on any
	// sane test machine, so running out means something is wrong.
	tries = 1000
)

var (
	mu sync.Mutex
	// taken holds every port handed out in this process. A port is free to
	// net.Listen until its server binds it, so without this two callers
	// (or one caller picking two ports) could both get it in that gap. It
	// is process-wide because the servers of all tests share one network.
	taken = map[int]bool{}
)

// Port returns a loopback port in 20000-32000 that nothing listened on when
// checked and that no earlier caller in this process was given. It fails the
// test when none is found.
func Port(t testing.TB) int {
	t.Helper()
	p, ok := pick(portMin, portMax)
	if !ok {
		t.Fatalf("freeport: no free port in %d-%d after %d tries", portMin, portMax, tries)
	}
	return p
}

// pick draws ports in lo-hi (inclusive) until one is neither taken nor
// busy, and marks it taken.
func pick(lo, hi int) (int, bool) {
	mu.Lock()
	defer mu.Unlock()
	for range tries {
		p := lo + rand.IntN(hi-lo+1)
		if taken[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		taken[p] = true
		return p, true
	}
	return 0, false
}

// Addr is Port as "127.0.0.1:N".
func Addr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(Port(t))
}

package freeport

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// TestPortsAreDistinct has many goroutines take ports at once: none may be
// handed out twice, and each must be in range and bindable.
func TestPortsAreDistinct(t *testing.T) {
	const workers, perWorker = 8, 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[int]bool{}
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				p := Port(t)
				mu.Lock()
				if seen[p] {
					t.Errorf("port %d handed out twice", p)
				}
				seen[p] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != workers*perWorker {
		t.Fatalf("got %d distinct ports, want %d", len(seen), workers*perWorker)
	}
	for p := range seen {
		if p < portMin || p > portMax {
			t.Errorf("port %d outside %d-%d", p, portMin, portMax)
		}
	}
}

// TestPickSkipsBusyAndTaken narrows the range to one port so the outcome is
// certain: a port someone listens on is refused, a free one is handed out
// once, and never again.
func TestPickSkipsBusyAndTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	if got, ok := pick(p, p); ok {
		t.Fatalf("pick returned busy port %d", got)
	}
	ln.Close()
	if got, ok := pick(p, p); !ok || got != p {
		t.Fatalf("pick(%d, %d) after close = %d, %v; want the port", p, p, got, ok)
	}
	if got, ok := pick(p, p); ok {
		t.Fatalf("pick handed out port %d twice", got)
	}
}

// TestAddr checks the address form and that it is bindable.
func TestAddr(t *testing.T) {
	addr := Addr(t)
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:N", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < portMin || n > portMax {
		t.Fatalf("Addr() = %q, port outside %d-%d", addr, portMin, portMax)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("Addr() = %q is not free: %v", addr, err)
	}
	ln.Close()
}

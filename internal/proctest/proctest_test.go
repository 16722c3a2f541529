package proctest

import (
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/internal/freeport"
)

// helperEnv makes the test binary act as the server under test: a process
// that listens on the address in the variable until it is signalled.
const helperEnv = "PROCTEST_HELPER_LISTEN"

func TestMain(m *testing.M) {
	if addr := os.Getenv(helperEnv); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			os.Exit(3)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(4)
			}
			c.Close()
		}
	}
	os.Exit(m.Run())
}

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// startHelper runs the test binary as a listener on a free port.
func startHelper(t *testing.T) (*Server, string) {
	var addr string
	dir := t.TempDir()
	s := Start(t, func() Spec {
		addr = freeport.Addr(t)
		return Spec{
			Name: "helper", Bin: os.Args[0], Env: []string{helperEnv + "=" + addr}, Dir: dir,
			Ready: func() error { return dial(addr) },
		}
	})
	return s, addr
}

// TestStopKillRestart drives the whole lifecycle and checks each step from
// the outside: the port answers exactly while the process runs.
func TestStopKillRestart(t *testing.T) {
	s, addr := startHelper(t)
	if err := dial(addr); err != nil {
		t.Fatalf("after Start: %v", err)
	}
	s.Kill()
	if dial(addr) == nil {
		t.Fatal("port still answers after Kill")
	}
	s.Kill() // no-op on a dead server
	if err := s.TryRestart(); err != nil {
		t.Fatalf("TryRestart after Kill: %v", err)
	}
	if err := dial(addr); err != nil {
		t.Fatalf("after TryRestart: %v", err)
	}
	s.Stop()
	if dial(addr) == nil {
		t.Fatal("port still answers after Stop")
	}
	s.Restart()
	s.Restart() // from running: stops first
	if err := dial(addr); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	log, err := os.ReadFile(s.logPath())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "=== proctest: starting helper"); n != 4 {
		t.Fatalf("log has %d start markers, want 4:\n%s", n, log)
	}
}

// TestConcurrentFaults has a fault injector kill and restart the server
// while the test goroutine does the same; under -race this checks the
// locking, and the server must end up serving.
func TestConcurrentFaults(t *testing.T) {
	s, addr := startHelper(t)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			s.Kill()
			if err := s.TryRestart(); err != nil {
				errs <- err
			}
		}
	}()
	for range 5 {
		s.Stop()
		s.Restart()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := dial(addr); err != nil {
		t.Fatalf("after concurrent restarts: %v", err)
	}
}

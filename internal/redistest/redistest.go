// Package redistest runs a private, real redis-server for tests that kill,
// restart or flush Redis without disturbing the shared one.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/internal/proctest"
)

// pingTimeout bounds one PING while waiting for a (re)start.
const pingTimeout = time.Second

// Server is one redis-server that keeps nothing on disk, like the shared one
// (scripts/deps.sh): every Stop or Kill loses its data. Stop, Kill, Restart
// and TryRestart come from proctest.Server; Restart uses the same port and
// works on a stopped or killed server too.
type Server struct {
	*proctest.Server
	port int
}

// Start runs a private redis-server on a free loopback port and waits until
// it answers PING. The test fails when redis-server is not installed;
// the server is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t)
}

// start runs one redis-server with extra arguments after the common ones.
func start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := proctest.Binary(t, "redis-server", "/usr/bin/redis-server", "redis-server")
	dir := t.TempDir()
	s := &Server{}
	clusterBus := false
	for _, a := range extra {
		clusterBus = clusterBus || a == "--cluster-enabled"
	}
	s.Server = proctest.Start(t, func() proctest.Spec {
		s.port = freeport.Port(t)
		addr := s.Addr()
		args := append([]string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port),
			// No RDB, no AOF: a restart starts empty, as the shared
			// Redis does. --dir keeps any stray file in the test's dir.
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--daemonize", "no", "--logfile", "",
		}, extra...)
		if clusterBus {
			// The bus port defaults to port+10000, which lands in the
			// ephemeral range where an outgoing connection may hold it.
			args = append(args, "--cluster-port", strconv.Itoa(freeport.Port(t)))
		}
		return proctest.Spec{
			Name:  "redis",
			Bin:   bin,
			Dir:   dir,
			Args:  args,
			Ready: func() error { return ping(addr) },
		}
	})
	return s
}

// Addr is "127.0.0.1:N", for redis.Options.Addr.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// ping speaks the one inline command it needs rather than pulling a client
// pool into every readiness probe.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, pingTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(pingTimeout))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return fmt.Errorf("redis %s: PING: %w", addr, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("redis %s: PING reply: %w", addr, err)
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("redis %s: PING answered %q", addr, line)
	}
	return nil
}

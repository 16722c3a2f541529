// Package etcdtest runs a private, real etcd process for tests that need to
// take etcd away (outage, restart) without disturbing the shared one.
package etcdtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// Ports come from below the Linux ephemeral range so they do not clash
	// with outgoing connections of other tests.
	portMin = 20000
	portMax = 32000
	// startTimeout bounds how long a start or restart may take to answer.
	startTimeout = 20 * time.Second
	// stopTimeout bounds a graceful stop before it turns into a kill.
	stopTimeout = 10 * time.Second
	// startTries covers the rare port grabbed by another process between
	// our listen check and etcd binding it.
	startTries = 3
)

// Server is one single-member etcd. Its methods are not safe for concurrent
// use; a test drives it from one goroutine.
type Server struct {
	t      testing.TB
	bin    string
	dir    string
	client int
	peer   int
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs a private etcd on free loopback ports and waits until it
// answers. The test is skipped when no etcd binary is installed; the server
// is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/etcd"); serr != nil {
			t.Skip("etcdtest: no etcd binary on PATH or at /usr/bin/etcd (apt-get install etcd-server)")
		}
		bin = "/usr/bin/etcd"
	}
	s := &Server{t: t, bin: bin}
	t.Cleanup(s.cleanup)
	for try := 1; ; try++ {
		s.dir = t.TempDir()
		s.client, s.peer = freePort(t), freePort(t)
		err := s.start()
		if err == nil {
			return s
		}
		if try == startTries {
			t.Fatalf("etcdtest: start: %v\n%s", err, s.logTail())
		}
		s.Kill()
	}
}

// Endpoint is the client address, for clientv3.Config.Endpoints.
func (s *Server) Endpoint() string { return "127.0.0.1:" + strconv.Itoa(s.client) }

// Stop ends etcd with SIGTERM and waits for it to exit.
func (s *Server) Stop() {
	s.t.Helper()
	if !s.running() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.t.Errorf("etcdtest: etcd did not stop within %v; killing", stopTimeout)
		s.Kill()
	}
}

// Kill ends etcd with SIGKILL, as a crash would, and waits for it to exit.
func (s *Server) Kill() {
	if !s.running() {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// Restart starts etcd again on the same ports and data dir and waits until
// it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: restart: %v\n%s", err, s.logTail())
	}
}

func (s *Server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *Server) start() error {
	clientURL := "http://" + s.Endpoint()
	peerURL := "http://127.0.0.1:" + strconv.Itoa(s.peer)
	logFile, err := os.OpenFile(filepath.Join(s.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin,
		"--name", "etcdtest",
		"--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "etcdtest="+peerURL,
		// A single member elects itself; short timings make (re)starts fast.
		"--heartbeat-interval", "20", "--election-timeout", "200",
		"--logger", "zap", "--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	return s.waitHealthy()
}

// waitHealthy polls /health, which reports true only once there is a leader.
func (s *Server) waitHealthy() error {
	hc := &http.Client{Timeout: time.Second}
	url := "http://" + s.Endpoint() + "/health"
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("etcd exited: %v", s.cmd.ProcessState)
		default:
		}
		if resp, err := hc.Get(url); err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(b.Bytes(), []byte(`"health":"true"`)) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd not healthy at %s within %v", url, startTimeout)
}

func (s *Server) cleanup() { s.Kill() }

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "etcd.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

var (
	portsMu sync.Mutex
	// taken keeps parallel tests of one binary from picking the same port
	// in the gap between our check and etcd binding it.
	taken = map[int]bool{}
)

func freePort(t testing.TB) int {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := portMin + rand.IntN(portMax-portMin)
		if taken[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		taken[p] = true
		return p
	}
	t.Fatalf("etcdtest: no free port in %d-%d", portMin, portMax)
	return 0
}

// Package proctest runs a real server process for tests: one command line
// that can be stopped, killed and started again, with its output in a log
// file and a readiness check polled after every start. etcdtest, redistest
// and mariadbtest build on it.
package proctest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// startTimeout bounds a (re)start until Ready passes. Generous: two
	// shared cores under go test -race, and MariaDB may replay its redo
	// log after a kill.
	startTimeout = 60 * time.Second
	// stopTimeout bounds a graceful stop before it turns into a kill.
	stopTimeout = 30 * time.Second
	// startTries covers the rare port grabbed by another process between
	// the free-port check and the server binding it.
	startTries = 3
	// pollInterval paces Ready checks.
	pollInterval = 50 * time.Millisecond
	// logTailBytes is how much of the log goes into a failure message.
	logTailBytes = 4000
)

// Spec is how to run one server.
type Spec struct {
	Name string   // short program name, for messages and the log file
	Bin  string   // path of the executable
	Args []string // the same on every start
	Env  []string // added to the test's environment, "KEY=value"
	Dir  string   // existing directory that holds <Name>.log
	// Ready reports nil once the server serves clients. It is polled, so
	// each call must give up within a second or two.
	Ready func() error
}

// Server is one server process that can be stopped, killed and started
// again with the same Spec. Stop, Kill and TryRestart may be called from any
// goroutine (a fault injector may run beside the test); they are serialized.
type Server struct {
	t    testing.TB
	spec Spec

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
}

// Start runs the server that newSpec describes and waits until it is ready;
// the test fails if it does not get there. newSpec is called again for each
// attempt so it can pick fresh ports. The process is killed when the test
// ends, and its log tail is printed if the test failed.
func Start(t testing.TB, newSpec func() Spec) *Server {
	t.Helper()
	s := &Server{t: t}
	t.Cleanup(s.cleanup)
	for try := 1; ; try++ {
		s.spec = newSpec()
		s.mu.Lock()
		err := s.startLocked()
		if err != nil {
			s.killLocked()
		}
		s.mu.Unlock()
		if err == nil {
			return s
		}
		if try == startTries {
			t.Fatalf("proctest: %v\n%s", err, s.logTail())
		}
	}
}

// Binary returns the first candidate that is an executable: a name with a
// slash is a path, any other name is looked up in PATH. The test fails when
// there is none, naming the Debian package that provides it.
func Binary(t testing.TB, debianPackage string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	// Failing, not skipping: a missing server is a broken setup that a
	// skip would hide.
	t.Fatalf("proctest: none of %v installed; run scripts/deps.sh (make deps), which installs %s", candidates, debianPackage)
	return ""
}

// Stop ends the server with SIGTERM and waits for it to exit. A server that
// does not exit within the stop timeout is killed and the test marked
// failed. Stopping a server that is not running does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(); err != nil {
		s.t.Error(err)
	}
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it to
// exit. Killing a server that is not running does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

// Restart stops the server if it is running (gracefully), starts it again
// and waits until it is ready; it fails the test otherwise. It must be
// called from the test's goroutine; use TryRestart elsewhere.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.TryRestart(); err != nil {
		s.t.Fatal(err)
	}
}

// TryRestart is Restart reporting failure as an error, for goroutines other
// than the test's. It works whether or not the server is running, so
// Kill, a pause, then TryRestart models a crash and a later recovery.
func (s *Server) TryRestart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	stopErr := s.stopLocked()
	if err := s.startLocked(); err != nil {
		s.killLocked()
		return errors.Join(stopErr, fmt.Errorf("proctest: restart: %w\n%s", err, s.logTail()))
	}
	return stopErr
}

func (s *Server) runningLocked() bool {
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

func (s *Server) stopLocked() error {
	if !s.runningLocked() {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return nil
	case <-time.After(stopTimeout):
		s.killLocked()
		return fmt.Errorf("proctest: %s did not stop within %v of SIGTERM; killed it", s.spec.Name, stopTimeout)
	}
}

func (s *Server) killLocked() {
	if !s.runningLocked() {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

func (s *Server) startLocked() error {
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s log: %w", s.spec.Name, err)
	}
	// A marker per start, so a log spanning restarts reads in sections.
	fmt.Fprintf(logFile, "=== proctest: starting %s at %s\n", s.spec.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.spec.Bin, s.spec.Args...)
	cmd.Env = append(os.Environ(), s.spec.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", s.spec.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	return s.waitReady()
}

// waitReady polls Ready until it passes, the process exits or time is up.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.spec.Ready()
		if err == nil {
			return nil
		}
		if !s.runningLocked() {
			return fmt.Errorf("%s exited while starting: %v", s.spec.Name, s.cmd.ProcessState)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v: %w", s.spec.Name, startTimeout, err)
		}
		select {
		case <-s.exited:
		case <-time.After(pollInterval):
		}
	}
}

func (s *Server) cleanup() {
	s.Kill()
	if s.t.Failed() && s.spec.Name != "" {
		s.t.Logf("proctest: end of %s log (%s):\n%s", s.spec.Name, s.logPath(), s.logTail())
	}
}

func (s *Server) logPath() string { return filepath.Join(s.spec.Dir, s.spec.Name+".log") }

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath())
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return string(b)
}

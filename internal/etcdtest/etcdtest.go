// Package etcdtest runs a private, real etcd process for tests that need to
// take etcd away (outage, restart) without disturbing the shared one.
package etcdtest

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/internal/proctest"
)

// healthTimeout bounds one /health probe while waiting for a (re)start.
const healthTimeout = time.Second

// Server is one single-member etcd. Stop, Kill, Restart and TryRestart come
// from proctest.Server: Restart keeps the ports and the data dir, so the
// member comes back with its data.
type Server struct {
	*proctest.Server
	client int
}

// Start runs a private etcd on free loopback ports and waits until it
// answers. The test fails when no etcd binary is installed; the server
// is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := proctest.Binary(t, "etcd-server", "etcd", "/usr/bin/etcd")
	hc := &http.Client{Timeout: healthTimeout}
	s := &Server{}
	s.Server = proctest.Start(t, func() proctest.Spec {
		dir := t.TempDir()
		s.client = freeport.Port(t)
		clientURL := "http://" + s.Endpoint()
		peerURL := "http://" + freeport.Addr(t)
		return proctest.Spec{
			Name: "etcd",
			Bin:  bin,
			Dir:  dir,
			Args: []string{
				"--name", "etcdtest",
				"--data-dir", filepath.Join(dir, "data"),
				"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
				"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
				"--initial-cluster", "etcdtest=" + peerURL,
				// A single member elects itself; short timings make (re)starts fast.
				"--heartbeat-interval", "20", "--election-timeout", "200",
				"--logger", "zap", "--log-level", "warn",
			},
			Ready: func() error { return healthy(hc, clientURL+"/health") },
		}
	})
	return s
}

// Endpoint is the client address, for clientv3.Config.Endpoints.
func (s *Server) Endpoint() string { return "127.0.0.1:" + strconv.Itoa(s.client) }

// healthy checks /health, which reports true only once there is a leader.
func healthy(hc *http.Client, url string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b.Bytes(), []byte(`"health":"true"`)) {
		return fmt.Errorf("etcd %s: %s %s", url, resp.Status, bytes.TrimSpace(b.Bytes()))
	}
	return nil
}

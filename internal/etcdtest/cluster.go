package etcdtest

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/internal/proctest"
)

// clusterHealthyTimeout bounds the wait for every running member to see a
// leader after a (re)start.
const clusterHealthyTimeout = 60 * time.Second

// Cluster is a private multi-member etcd. Members are proctest servers:
// Stop, Kill and Restart one to take it away and bring it back with its
// data dir and ports.
type Cluster struct {
	Members []*Server
	t       testing.TB
	hc      *http.Client
}

// StartCluster runs an n-member etcd (n odd, 3 for a quorum of 2) on free
// loopback ports and waits until every member reports a leader. The
// members are killed when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := proctest.Binary(t, "etcd-server", "etcd", "/usr/bin/etcd")
	c := &Cluster{t: t, hc: &http.Client{Timeout: healthTimeout}}
	names := make([]string, n)
	clients := make([]int, n)
	peers := make([]string, n)
	initial := make([]string, n)
	for i := range names {
		names[i] = "member" + strconv.Itoa(i)
		clients[i] = freeport.Port(t)
		peers[i] = "http://" + freeport.Addr(t)
		initial[i] = names[i] + "=" + peers[i]
	}
	token := fmt.Sprintf("etcdtest-%d", time.Now().UnixNano())
	for i := range names {
		dir := t.TempDir()
		s := &Server{client: clients[i]}
		clientURL := "http://" + s.Endpoint()
		s.Server = proctest.Start(t, func() proctest.Spec {
			return proctest.Spec{
				Name: "etcd-" + names[i],
				Bin:  bin,
				Dir:  dir,
				Args: []string{
					"--name", names[i],
					"--data-dir", filepath.Join(dir, "data"),
					"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
					"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
					"--initial-cluster", strings.Join(initial, ","),
					"--initial-cluster-state", "new", "--initial-cluster-token", token,
					"--heartbeat-interval", "50", "--election-timeout", "500",
					"--logger", "zap", "--log-level", "warn",
				},
				// A member alone has no leader: ready once it listens;
				// WaitHealthy waits for the quorum.
				Ready: func() error { return listening(s.Endpoint()) },
			}
		})
		c.Members = append(c.Members, s)
	}
	c.WaitHealthy()
	return c
}

// Endpoints is the comma-separated client list, the form of the -etcd flag.
func (c *Cluster) Endpoints() string {
	e := make([]string, len(c.Members))
	for i, m := range c.Members {
		e[i] = m.Endpoint()
	}
	return strings.Join(e, ",")
}

// WaitHealthy waits until every member given (all when none) reports a
// leader on /health; it fails the test otherwise.
func (c *Cluster) WaitHealthy(members ...*Server) {
	c.t.Helper()
	if len(members) == 0 {
		members = c.Members
	}
	deadline := time.Now().Add(clusterHealthyTimeout)
	for _, m := range members {
		for {
			err := healthy(c.hc, "http://"+m.Endpoint()+"/health")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("etcdtest: member %s not healthy within %v: %v", m.Endpoint(), clusterHealthyTimeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func listening(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, healthTimeout)
	if err != nil {
		return err
	}
	return conn.Close()
}

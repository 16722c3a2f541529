package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// ClusterMasters is how many masters StartCluster runs: the fewest
	// redis-cli --cluster create accepts.
	ClusterMasters = 3
	// clusterNodeTimeout is how long a silent node takes to be marked
	// failed (ms); short so fault tests see a kill within seconds.
	clusterNodeTimeout = 2000
	// clusterCreateTimeout bounds redis-cli --cluster create.
	clusterCreateTimeout = 60 * time.Second
	// clusterOKTimeout bounds the wait for every node to report
	// cluster_state:ok after a (re)start.
	clusterOKTimeout = 60 * time.Second
)

// Cluster is a private Redis Cluster of ClusterMasters masters without
// replicas, each keeping nothing on disk but its nodes.conf: a killed and
// restarted master comes back with its slots but no data, as an empty
// cache. Slots of a dead master fail while the others keep serving
// (cluster-require-full-coverage no).
type Cluster struct {
	Nodes []*Server
	t     testing.TB
}

// StartCluster runs ClusterMasters redis-servers in cluster mode on free
// loopback ports, joins them with redis-cli --cluster create and waits until
// every node reports cluster_state:ok. The test fails when redis-server or
// redis-cli is missing; the servers are killed when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli := redisCLI(t)
	c := &Cluster{t: t}
	for i := 0; i < ClusterMasters; i++ {
		c.Nodes = append(c.Nodes, start(t,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(clusterNodeTimeout),
			"--cluster-require-full-coverage", "no"))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.WaitOK()
	return c
}

func redisCLI(t testing.TB) string {
	t.Helper()
	bin := "redis-cli"
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	t.Fatalf("redistest: redis-cli not installed; run scripts/deps.sh (make deps), which installs redis-tools")
	return ""
}

// Addrs is the comma-separated node list, the form of the -redis flag.
func (c *Cluster) Addrs() string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr()
	}
	return strings.Join(a, ",")
}

// Client returns a cluster client closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	a := strings.Split(c.Addrs(), ",")
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: a})
	c.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// WaitOK waits until every node answers and reports cluster_state:ok with
// all slots assigned; it fails the test otherwise.
func (c *Cluster) WaitOK() {
	c.t.Helper()
	if err := c.TryWaitOK(); err != nil {
		c.t.Fatal(err)
	}
}

// TryWaitOK is WaitOK returning an error, for goroutines other than the
// test's (a fault injector).
func (c *Cluster) TryWaitOK() error {
	deadline := time.Now().Add(clusterOKTimeout)
	var last error
	for time.Now().Before(deadline) {
		if last = c.allOK(); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("redistest: cluster %s not ok within %v: %w", c.Addrs(), clusterOKTimeout, last)
}

func (c *Cluster) allOK() error {
	for _, n := range c.Nodes {
		if err := nodeOK(n.Addr()); err != nil {
			return err
		}
	}
	return nil
}

func nodeOK(addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: pingTimeout, ReadTimeout: pingTimeout})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	info, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return fmt.Errorf("%s: CLUSTER INFO: %w", addr, err)
	}
	want := []string{"cluster_state:ok", "cluster_slots_ok:16384", "cluster_known_nodes:" + strconv.Itoa(ClusterMasters)}
	for _, w := range want {
		if !strings.Contains(info, w+"\r\n") {
			return fmt.Errorf("%s: CLUSTER INFO lacks %q", addr, w)
		}
	}
	return nil
}

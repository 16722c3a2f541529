// Package discovery registers service instances in etcd under a lease and
// watches their peers. Keys: /pushgw/<cluster>/<service>/<instance-id>,
// values: JSON Instance. A watcher keeps the last known set when etcd is
// unreachable, so services keep serving with the peers they know.
package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Service names, also the second path element of instance keys.
const (
	ServiceDispatcher  = "dispatcher"
	ServiceRoom        = "room"
	ServiceRegister    = "register"
	ServiceSaver       = "saver"
	ServiceCenter      = "center"
	ServiceCoordinator = "coordinator"
)

// Timing defaults.
const (
	DefaultLeaseTTL    = 10 * time.Second
	DefaultDialTimeout = 5 * time.Second
	retryMin           = 500 * time.Millisecond
	retryMax           = 5 * time.Second
	// reregisterEvery paces re-registration after a lost lease. It stays
	// short: when etcd comes back it still holds the old lease and expires
	// it one TTL later, deleting the key, and peers then see no instance
	// until the new registration lands. One Put a second is nothing to etcd.
	reregisterEvery = time.Second
)

// Instance is what a service instance publishes about itself.
type Instance struct {
	Service string `json:"service"`
	ID      string `json:"id"`
	// Addr is the gRPC address other services dial (empty if none).
	Addr string `json:"addr,omitempty"`
	// Endpoints are addresses for outside clients by kind ("tcp", "http").
	Endpoints map[string]string `json:"endpoints,omitempty"`
	IDC       string            `json:"idc,omitempty"`
	// Load is a service-defined load figure (room: live connections).
	Load     int64     `json:"load"`
	Draining bool      `json:"draining,omitempty"`
	Started  time.Time `json:"started"`
}

// Prefix returns the key prefix of all instances of service in cluster.
func Prefix(cluster, service string) string {
	return "/pushgw/" + cluster + "/" + service + "/"
}

// Key returns the key of one instance.
func Key(cluster, service, id string) string { return Prefix(cluster, service) + id }

// Connect dials etcd and checks it answers within timeout, so a service
// started without etcd fails at once with a clear error.
func Connect(ctx context.Context, endpoints []string, timeout time.Duration) (*clientv3.Client, error) {
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          timeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               nil,
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Get(cctx, "/pushgw/", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("discovery: etcd %s not reachable: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}

func decode(kv []byte) (Instance, error) {
	var in Instance
	err := json.Unmarshal(kv, &in)
	return in, err
}

func backoff(d time.Duration) time.Duration {
	d *= 2
	if d > retryMax {
		return retryMax
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/internal/etcdtest"
	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// lastKnownPeersLog is what pkg/discovery logs when it cannot list a
// service and keeps serving with what it knew.
const lastKnownPeersLog = "keeping last known peers"

// On a 3-member etcd given to every service as -etcd a,b,c, losing the
// leader changes nothing a user sees: pushes keep flowing, leases (instance
// registrations, the center's id node) are renewed through the new leader,
// a restarted room registers again and is discovered, and a new app config
// is watched in. Losing the quorum too degrades to the last known peers
// with a log line saying so: pushes to connected users still flow and no
// process exits. Traffic runs in the background the whole time.
func TestEtcdCluster(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, EtcdCluster: true, Heartbeat: 2 * time.Second})
	ec := c.EtcdCluster
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cli, err := discovery.Connect(ctx, c.EtcdEndpoints(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	online := Dial(t, c.RoomTCP[0])
	online.Auth(c.Token("steady", "phone", time.Hour))
	stopPing := keepPinging(t, online, 500*time.Millisecond)
	defer stopPing()
	waitSession(t, c, "steady", 1)
	pushAndAck := func(t *testing.T, rc *RawClient, user, what string) {
		t.Helper()
		id := c.Push(user, 1, time.Hour, what)
		p, err := rc.NextPush(15 * time.Second)
		if err != nil || p.Id != id {
			t.Fatalf("%s: push = %+v, %v; want %d", what, p, err, id)
		}
		rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{id}})
	}

	traffic := startTraffic(t, c)
	leader := etcdLeader(t, ctx, cli, ec)
	leader.Stop()

	t.Run("one member down: push to an online user", func(t *testing.T) {
		pushAndAck(t, online, "steady", "leader stopped")
	})
	t.Run("one member down: instance and id-node leases are renewed", func(t *testing.T) {
		for _, prefix := range []string{discovery.Prefix(c.Name, discovery.ServiceRoom), "/pushgw/" + c.Name + "/ids/nodes/"} {
			resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
			if err != nil || len(resp.Kvs) == 0 {
				t.Fatalf("no keys under %s: %v", prefix, err)
			}
			for _, kv := range resp.Kvs {
				waitLeaseRenewed(t, ctx, cli, string(kv.Key), clientv3.LeaseID(kv.Lease))
			}
		}
	})
	t.Run("one member down: a new app config is watched in", func(t *testing.T) {
		late := appconfig.App{Name: "late-" + c.Name, Secret: randHex(16), APIKey: randHex(16)}
		if err := appconfig.Put(ctx, cli, c.Name, late); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 15*time.Second, "center accepts the new app's key", func() bool {
			code, _ := c.APIWithKey(late.APIKey, "POST", "/v1/push", map[string]any{"app": late.Name, "user": "u", "payload": "x", "qos": 1})
			return code == http.StatusOK
		})
	})
	t.Run("one member down: a restarted room registers and is discovered", func(t *testing.T) {
		c.Stop(RoomName(1))
		c.WaitInstances(discovery.ServiceRoom, 1)
		c.Start(RoomName(1))
		c.WaitInstances(discovery.ServiceRoom, 2)
		rc := Dial(t, c.RoomTCP[1])
		rc.Auth(c.Token("returner", "phone", time.Hour))
		stop := keepPinging(t, rc, 500*time.Millisecond)
		defer stop()
		waitSession(t, c, "returner", 1)
		pushAndAck(t, rc, "returner", "to the restarted room")
	})

	// Quorum lost: a second member goes.
	var second *etcdtest.Server
	for _, m := range ec.Members {
		if m != leader {
			second = m
			break
		}
	}
	second.Stop()
	t.Run("no quorum: center logs that it keeps the last known peers", func(t *testing.T) {
		Eventually(t, 60*time.Second, "center log line "+lastKnownPeersLog, func() bool {
			b, _ := os.ReadFile(c.Procs["center"].Log)
			return bytes.Contains(b, []byte(lastKnownPeersLog))
		})
	})
	t.Run("no quorum: pushes still flow to known peers", func(t *testing.T) {
		pushAndAck(t, online, "steady", "no quorum")
	})
	t.Run("no quorum: no process exited", func(t *testing.T) {
		for name, p := range c.Procs {
			resp, err := http.Get("http://" + p.Admin + "/metrics")
			if err != nil {
				t.Fatalf("%s gone without an etcd quorum: %v\n%s", name, err, c.Tail(name, 20))
			}
			resp.Body.Close()
		}
	})

	leader.Restart()
	second.Restart()
	ec.WaitHealthy()
	pushAndAck(t, online, "steady", "quorum back")
	sent, failed := traffic.stop()
	if sent == 0 || failed != 0 {
		t.Fatalf("background pushes: %d sent, %d failed; want none failed", sent, failed)
	}
	t.Logf("background pushes: %d sent, 0 failed", sent)
}

// etcdLeader returns the member that leads now.
func etcdLeader(t *testing.T, ctx context.Context, cli *clientv3.Client, ec *etcdtest.Cluster) *etcdtest.Server {
	t.Helper()
	for _, m := range ec.Members {
		st, err := cli.Status(ctx, m.Endpoint())
		if err != nil {
			t.Fatalf("etcd status %s: %v", m.Endpoint(), err)
		}
		if st.Leader == st.Header.MemberId {
			return m
		}
	}
	t.Fatal("no etcd member is the leader")
	return nil
}

// waitLeaseRenewed waits until key's lease is kept alive: its remaining TTL
// goes up again after an observation, and key still hangs on the same lease.
func waitLeaseRenewed(t *testing.T, ctx context.Context, cli *clientv3.Client, key string, lease clientv3.LeaseID) {
	t.Helper()
	low := int64(-1)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r, err := cli.TimeToLive(ctx, lease)
		if err == nil && r.TTL > 0 {
			if low >= 0 && r.TTL > low {
				resp, err := cli.Get(ctx, key)
				if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != lease {
					t.Fatalf("%s moved off lease %x: %v", key, lease, err)
				}
				return
			}
			if low < 0 || r.TTL < low {
				low = r.TTL
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("lease %x of %s not renewed within 30s", lease, key)
}

// traffic pushes QoS 1 messages to an offline user through center at a
// steady pace until stop, counting what center did not accept.
type traffic struct {
	stopc        chan struct{}
	wg           sync.WaitGroup
	sent, failed atomic.Int64
}

// trafficEvery paces the background pushes.
const trafficEvery = 100 * time.Millisecond

func startTraffic(t *testing.T, c *Cluster) *traffic {
	tr := &traffic{stopc: make(chan struct{})}
	body, _ := json.Marshal(map[string]any{"app": c.App, "user": "bulk", "payload": "bg", "qos": 1})
	hc := &http.Client{Timeout: 10 * time.Second}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		tk := time.NewTicker(trafficEvery)
		defer tk.Stop()
		for {
			select {
			case <-tr.stopc:
				return
			case <-tk.C:
			}
			req, _ := http.NewRequest("POST", c.CenterURL+"/v1/push", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+c.APIKey)
			req.Header.Set("Content-Type", "application/json")
			tr.sent.Add(1)
			resp, err := hc.Do(req)
			if err != nil {
				tr.failed.Add(1)
				t.Logf("background push: %v", err)
				continue
			}
			if resp.StatusCode != http.StatusOK {
				tr.failed.Add(1)
				t.Logf("background push: status %d", resp.StatusCode)
			}
			resp.Body.Close()
		}
	}()
	t.Cleanup(func() { tr.stop() })
	return tr
}

func (tr *traffic) stop() (sent, failed int64) {
	select {
	case <-tr.stopc:
	default:
		close(tr.stopc)
	}
	tr.wg.Wait()
	return tr.sent.Load(), tr.failed.Load()
}

package test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// etcd is the keeper, not the data path: with etcd down past every lease's
// TTL the cluster keeps pushing, accepting logins and handing out
// endpoints with what it knew, and every instance is registered again once
// etcd is back.
func TestEtcdOutage(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, PrivateEtcd: true, Heartbeat: 2 * time.Second})
	online := Dial(t, c.RoomTCP[0])
	online.Auth(c.Token("steady", "phone", time.Hour))
	stop := keepPinging(t, online, 500*time.Millisecond)
	defer stop()
	waitSession(t, c, "steady", 1)

	c.EtcdServer.Stop()
	time.Sleep(12 * time.Second) // past the 10 s instance and id-node leases

	t.Run("push to an online user", func(t *testing.T) {
		id := c.Push("steady", 1, time.Hour, "etcd is down")
		p, err := online.NextPush(10 * time.Second)
		if err != nil || p.Id != id {
			t.Fatalf("push = %+v, %v; want %d", p, err, id)
		}
		online.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{id}})
	})
	t.Run("new login on the other room", func(t *testing.T) {
		rc := Dial(t, c.RoomTCP[1])
		rc.Auth(c.Token("newcomer", "phone", time.Hour))
		id := c.Push("newcomer", 1, time.Hour, "welcome")
		if p, err := rc.NextPush(10 * time.Second); err != nil || p.Id != id {
			t.Fatalf("push = %+v, %v; want %d", p, err, id)
		}
	})
	t.Run("dispatcher answers from its last view", func(t *testing.T) {
		resp, err := http.Get(c.DispatcherURL + "/v1/endpoints?app=" + c.App + "&user=x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("dispatcher status %d during the outage", resp.StatusCode)
		}
	})

	c.EtcdServer.Restart()
	// etcd restores leases on restart with a fresh TTL, so the old keys
	// linger for one TTL; only instances that registered again are still
	// listed after it.
	time.Sleep(11 * time.Second)
	for _, svc := range []string{discovery.ServiceRoom, discovery.ServiceCenter, discovery.ServiceRegister,
		discovery.ServiceSaver, discovery.ServiceDispatcher, discovery.ServiceCoordinator} {
		n := 1
		if svc == discovery.ServiceRoom {
			n = 2
		}
		c.WaitInstances(svc, n)
	}
	id := c.Push("steady", 1, time.Hour, "etcd is back")
	if p, err := online.NextPush(10 * time.Second); err != nil || p.Id != id {
		t.Fatalf("push after etcd came back = %+v, %v; want %d", p, err, id)
	}
}

package test

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// loginReplyWait is the room's -auth-reply-wait in these tests: far above
// a register batch even on a loaded box, so a miss is the room's fault,
// not the bound's (the bound itself is what the register outage test
// exercises).
const loginReplyWait = "5s"

// roomEngines are the room engines the login tests run on.
var roomEngines = []string{"gnet", "std"}

// Login semantics docs/protocol.md §4.1 promises an outside client, on a
// real cluster, per room engine.
func TestLoginSemantics(t *testing.T) {
	for _, eng := range roomEngines {
		t.Run(eng, func(t *testing.T) {
			c := StartCluster(t, Options{Rooms: 1, Heartbeat: 10 * time.Second, ExtraCenterArg: noSweep, ExtraRoomArg: []string{"-engine", eng, "-auth-reply-wait", loginReplyWait}})
			t.Run("push right after AUTH_REPLY arrives", func(t *testing.T) { testPushAfterAuthReply(t, c) })
			t.Run("QoS 1 push racing the login is written once", func(t *testing.T) { testPushDuringLogin(t, c) })
		})
	}
}

// loginUsers is how many clients log in at once in the login tests: enough
// that the register batcher's flush window is always in play.
const loginUsers = 300

// testPushAfterAuthReply: a QoS 0 push sent the moment AUTH_REPLY is read
// must reach the client (QoS 0 is never stored: if center does not find
// the session, it is gone).
func testPushAfterAuthReply(t *testing.T, c *Cluster) {
	var wg sync.WaitGroup
	missed := make(chan string, loginUsers)
	for i := 0; i < loginUsers; i++ {
		user := fmt.Sprintf("reach-%d", i)
		rc := Dial(t, c.RoomTCP[0])
		tok := c.Token(user, "phone", time.Hour)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok})
			f, _, err := rc.Read(10 * time.Second)
			if err != nil || f.Op != protocol.OpAuthReply {
				missed <- fmt.Sprintf("%s: no AUTH_REPLY (%v %v)", user, f.Op, err)
				return
			}
			code, out := c.API("POST", "/v1/push", map[string]any{"app": c.App, "user": user, "payload": "now", "qos": 0})
			if code != 200 {
				missed <- fmt.Sprintf("%s: push %d %v", user, code, out)
				return
			}
			// A missing push shows as the PONG arriving first: the room
			// queues a frame for a connection in order.
			if p, err := rc.NextPush(5 * time.Second); err != nil || string(p.GetPayload()) != "now" {
				missed <- fmt.Sprintf("%s: QoS 0 push after AUTH_REPLY lost (%v)", user, err)
			}
		}()
	}
	wg.Wait()
	close(missed)
	n := 0
	for m := range missed {
		if n < 5 {
			t.Error(m)
		}
		n++
	}
	if n > 0 {
		t.Fatalf("%d of %d clients missed the push sent right after AUTH_REPLY", n, loginUsers)
	}
	// What waiting for register costs a login (docs/BENCHMARKS.md).
	m := ScrapeAdmin(t, c.Procs[RoomName(0)].Admin)
	const h = "pushgw_room_auth_reply_wait_seconds"
	if cnt := m[h+"_count"]; cnt > 0 {
		t.Logf("AUTH_REPLY wait over %v logins: mean %.1f ms, <=5 ms %.0f%%, <=10 ms %.0f%%, <=20 ms %.0f%%, <=50 ms %.0f%%",
			cnt, 1000*m[h+"_sum"]/cnt, 100*m[h+`_bucket{le="0.005"}`]/cnt, 100*m[h+`_bucket{le="0.01"}`]/cnt,
			100*m[h+`_bucket{le="0.02"}`]/cnt, 100*m[h+`_bucket{le="0.05"}`]/cnt)
	}
}

// testPushDuringLogin: a QoS 1 push stored while the client logs in is
// found by both the live path and the login's pending pull; the client
// must see it once. Every client acks, then pings: once saver has answered
// every login's pull, a second copy would be queued before the PONG.
func testPushDuringLogin(t *testing.T, c *Cluster) {
	pullsBefore := saverPendingCalls(t, c)
	written := func() float64 {
		return AdminValue(t, c.Procs[RoomName(0)].Admin, "pushgw_room_pushes_written_total")
	}
	writtenBefore := written()
	clients := make([]*RawClient, loginUsers)
	ids := make([]uint64, loginUsers)
	var wg sync.WaitGroup
	errs := make(chan string, loginUsers)
	for i := range clients {
		user := fmt.Sprintf("race-%d", i)
		rc := Dial(t, c.RoomTCP[0])
		clients[i] = rc
		tok := c.Token(user, "phone", time.Hour)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok})
			code, out := c.API("POST", "/v1/push", map[string]any{"app": c.App, "user": user, "payload": "once", "qos": 1, "ttl": 3600})
			if code != 200 {
				errs <- fmt.Sprintf("%s: push %d %v", user, code, out)
				return
			}
			if f, _, err := rc.Read(10 * time.Second); err != nil || f.Op != protocol.OpAuthReply {
				errs <- fmt.Sprintf("%s: no AUTH_REPLY (%v %v)", user, f.Op, err)
				return
			}
			p, err := rc.NextPush(10 * time.Second)
			if err != nil {
				errs <- fmt.Sprintf("%s: push never arrived: %v", user, err)
				return
			}
			ids[i] = p.GetId()
			rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{p.GetId()}})
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	Eventually(t, 10*time.Second, "saver answered every login's pull", func() bool {
		return saverPendingCalls(t, c)-pullsBefore >= loginUsers
	})
	for i, rc := range clients {
		seq := rc.Send(protocol.OpPing, nil)
		for {
			f, m, err := rc.Read(5 * time.Second)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			if f.Op == protocol.OpPong && f.Seq == seq {
				break
			}
			if p, ok := m.(*clientpb.Push); ok {
				t.Fatalf("client %d: PUSH %d written twice (first copy id %d)", i, p.GetId(), ids[i])
			}
		}
	}
	if n := written() - writtenBefore; n != loginUsers {
		t.Fatalf("room wrote %v pushes for %d messages to %d clients", n, loginUsers, loginUsers)
	}
}

// saverPendingCalls counts pulls saver answered so far: Saver.Pending
// calls, and users answered through Saver.PendingBatch (the room batches
// its pulls; services/room/pending_batch.go).
func saverPendingCalls(t *testing.T, c *Cluster) float64 {
	t.Helper()
	n := 0.0
	for k, v := range ScrapeAdmin(t, c.Procs["saver"].Admin) {
		if strings.HasPrefix(k, "pushgw_saver_rpc_duration_seconds_count") && strings.Contains(k, `Saver/Pending"`) {
			n += v
		}
		if strings.HasPrefix(k, "pushgw_saver_pending_batch_users_total") && !strings.Contains(k, `"deferred"`) && !strings.Contains(k, `"failed"`) {
			n += v
		}
	}
	return n
}

// hungLogins is more than the room's pending pool has workers (1024), so
// with saver hung every worker waits on it and further pulls must not make
// register's flusher wait for a free one.
const hungLogins = 1200

// With saver stopped (SIGSTOP: its connections stay open and calls hang
// until their deadline) a wave of logins still reaches register at once:
// no call to saver sits in the path of register's batches.
func TestLoginsRegisterWhileSaverHung(t *testing.T) {
	for _, eng := range roomEngines {
		t.Run(eng, func(t *testing.T) {
			c := StartCluster(t, Options{Rooms: 1, Heartbeat: 10 * time.Second, ExtraCenterArg: noSweep, ExtraRoomArg: []string{"-engine", eng}})
			reg := c.Procs["register"].Admin
			puts := func() float64 { return ScrapeAdmin(t, reg)[`pushgw_register_sessions_total{outcome="put"}`] }
			c.Signal("saver", syscall.SIGSTOP)
			t.Cleanup(func() { c.Signal("saver", syscall.SIGCONT) })
			before := puts()
			start := time.Now()
			var wg sync.WaitGroup
			fail := make(chan error, hungLogins)
			for i := 0; i < hungLogins; i++ {
				rc := Dial(t, c.RoomTCP[0])
				tok := c.Token(fmt.Sprintf("hung-%d", i), "phone", time.Hour)
				wg.Add(1)
				go func() {
					defer wg.Done()
					rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok})
					if f, _, err := rc.Read(10 * time.Second); err != nil || f.Op != protocol.OpAuthReply {
						fail <- fmt.Errorf("no AUTH_REPLY: %v %v", f.Op, err)
					}
				}()
			}
			wg.Wait()
			close(fail)
			for err := range fail {
				t.Fatal(err)
			}
			loggedIn := time.Since(start)
			Eventually(t, time.Second, fmt.Sprintf("%d logins registered within 1s of the last AUTH_REPLY", hungLogins), func() bool {
				return puts()-before >= hungLogins
			})
			t.Logf("%d logins answered in %v, all registered %v after the first AUTH", hungLogins, loggedIn, time.Since(start))
		})
	}
}

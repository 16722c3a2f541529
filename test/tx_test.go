package test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgw/pushgw/internal/mariadbtest"
	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/txcheck"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Check-back settings of the test apps: small, so a record is checked
// within a second and expires after txTestMax checks.
const (
	txTestInterval = 300 * time.Millisecond
	txTestMax      = 3
	// txNoCheck keeps the check-back away from a test that decides by API.
	txNoCheck = 3600
	// txAbsence is how long a test watches for a message that must not
	// come, after a later control message proved delivery works.
	txAbsence = 2 * time.Second
	// txHeartbeat outlasts every wait of these tests, so the raw clients,
	// which do not ping, keep their connections.
	txHeartbeat = 30 * time.Second
)

// txCenterArgs make check-back quick in tests; the lease is the smallest
// the flag check allows for a 1 s call.
// Four check workers per center: twenty records due at once outnumber one
// center's slots, so the other center finds due records left on its next
// poll whatever the scheduling (with the default 16, one center could take
// them all and "both share the work" failed under load).
var txCenterArgs = []string{"-tx-check-poll", "100ms", "-tx-check-timeout", "1s", "-tx-check-lease", "5s", "-tx-check-workers", "4"}

// setCheck stores app's check-back settings in etcd, as `pushctl app set
// --check-url` will.
func (c *Cluster) setCheck(t *testing.T, a appconfig.App, url string) {
	t.Helper()
	a.TxCheck = appconfig.TxCheck{CheckURL: url, CheckFirstMs: 500, CheckIntervalMs: txTestInterval.Milliseconds(), CheckMax: txTestMax}
	putApp(t, c, a)
}

func (c *Cluster) mainApp() appconfig.App {
	return appconfig.App{Name: c.App, Secret: c.Secret, APIKey: c.APIKey}
}

// txAPI calls center at base (one of CenterURLs) with key.
func (c *Cluster) txAPI(t *testing.T, base, key, method, path string, body any) (int, map[string]any) {
	t.Helper()
	saved := c.CenterURL
	defer func() { c.CenterURL = saved }()
	c.CenterURL = base
	return c.APIWithKey(key, method, path, body)
}

// prepareTx prepares a transactional push to users and returns its id
// and the message id of each user.
func (c *Cluster) prepareTx(t *testing.T, key string, users []string, payload, ikey string, checkAfter int) (string, map[string]any) {
	t.Helper()
	target := map[string]any{"kind": "users", "users": users}
	if len(users) == 1 {
		target = map[string]any{"kind": "user", "user": users[0]}
	}
	code, out := c.APIWithKey(key, "POST", "/v1/tx", map[string]any{"target": target, "payload": payload, "ttl": 600,
		"check_timeout": checkAfter, "idempotency_key": ikey})
	if code != 200 || out["state"] != "prepared" {
		t.Fatalf("prepare: %d %v", code, out)
	}
	return out["id"].(string), out
}

// messageIDs reads message_ids of a committed tx view.
func messageIDs(t *testing.T, out map[string]any) map[string]uint64 {
	t.Helper()
	ids := map[string]uint64{}
	m, _ := out["message_ids"].(map[string]any)
	for u, v := range m {
		id, err := strconv.ParseUint(v.(string), 10, 64)
		if err != nil {
			t.Fatalf("message id of %s: %v", u, v)
		}
		ids[u] = id
	}
	return ids
}

// online connects user to a room and waits until center can see it.
func (c *Cluster) online(t *testing.T, user string) *RawClient {
	rc := Dial(t, c.RoomTCP[0])
	rc.Auth(c.Token(user, "phone", time.Hour))
	waitSession(t, c, user, 1)
	return rc
}

// expectOnly asserts rc gets exactly the message ids want (in any order),
// acks them, then that a later control push arrives next and nothing else
// follows within txAbsence.
func (c *Cluster) expectOnly(t *testing.T, rc *RawClient, user string, want ...uint64) {
	t.Helper()
	pending := map[uint64]bool{}
	for _, id := range want {
		pending[id] = true
	}
	for len(pending) > 0 {
		p, err := rc.NextPush(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: waiting for %v: %v", user, pending, err)
		}
		if !pending[p.Id] {
			t.Fatalf("%s: got message %d (%q), want one of %v", user, p.Id, p.Payload, pending)
		}
		delete(pending, p.Id)
		rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{p.Id}})
	}
	control := c.Push(user, 1, time.Minute, "control")
	p, err := rc.NextPush(10 * time.Second)
	if err != nil || p.Id != control {
		t.Fatalf("%s: after %v want control %d next, got %v, %v", user, want, control, p.GetId(), err)
	}
	rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{control}})
	if p, err := rc.NextPush(txAbsence); err == nil {
		t.Fatalf("%s: unexpected message %d (%q) after the control message", user, p.Id, p.Payload)
	}
}

func TestTxAPI(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, Heartbeat: txHeartbeat})

	t.Run("prepare then commit delivers once to every user", func(t *testing.T) {
		a, b := c.online(t, "txc-a"), c.online(t, "txc-b")
		id, _ := c.prepareTx(t, c.APIKey, []string{"txc-a", "txc-b"}, "order paid", "", txNoCheck)
		if p, err := a.NextPush(time.Second); err == nil {
			t.Fatalf("prepared record delivered: %v", p)
		}
		code, out := c.API("POST", "/v1/tx/"+id+"/commit", nil)
		if code != 200 || out["state"] != "committed" || out["decided_by"] != "api" {
			t.Fatalf("commit: %d %v", code, out)
		}
		ids := messageIDs(t, out)
		code, again := c.API("POST", "/v1/tx/"+id+"/commit", nil)
		if code != 200 || again["state"] != "committed" || fmt.Sprint(again["message_ids"]) != fmt.Sprint(out["message_ids"]) {
			t.Fatalf("second commit: %d %v, want the first outcome %v", code, again, out)
		}
		c.expectOnly(t, a, "txc-a", ids["txc-a"])
		c.expectOnly(t, b, "txc-b", ids["txc-b"])
		code, got := c.API("GET", "/v1/tx/"+id, nil)
		if code != 200 || got["state"] != "committed" || got["decided_at"] == "" || got["checks"].(float64) != 0 {
			t.Fatalf("status: %d %v", code, got)
		}
	})

	t.Run("prepare then rollback is never delivered", func(t *testing.T) {
		rc := c.online(t, "txr-a")
		id, _ := c.prepareTx(t, c.APIKey, []string{"txr-a"}, "cancelled order", "", txNoCheck)
		code, out := c.API("POST", "/v1/tx/"+id+"/rollback", nil)
		if code != 200 || out["state"] != "rolled_back" {
			t.Fatalf("rollback: %d %v", code, out)
		}
		code, out = c.API("POST", "/v1/tx/"+id+"/commit", nil)
		if code != 409 || out["code"] != "TX_ALREADY_DECIDED" || out["state"] != "rolled_back" {
			t.Fatalf("commit after rollback: %d %v", code, out)
		}
		if code, out := c.API("POST", "/v1/tx/"+id+"/rollback", nil); code != 200 || out["state"] != "rolled_back" {
			t.Fatalf("second rollback: %d %v", code, out)
		}
		c.expectOnly(t, rc, "txr-a")
		// Nor on a later connect (Pending).
		rc.Conn.Close()
		again := Dial(t, c.RoomTCP[0])
		again.Auth(c.Token("txr-a", "phone", time.Hour))
		if p, err := again.NextPush(txAbsence); err == nil {
			t.Fatalf("rolled-back message delivered on reconnect: %v", p)
		}
	})

	t.Run("50 concurrent commits deliver once", func(t *testing.T) {
		rc := c.online(t, "txcc-a")
		id, _ := c.prepareTx(t, c.APIKey, []string{"txcc-a"}, "once", "", txNoCheck)
		var wg sync.WaitGroup
		codes := make(chan int, 50)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", c.CenterURL+"/v1/tx/"+id+"/commit", nil)
				req.Header.Set("Authorization", "Bearer "+c.APIKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
		}
		wg.Wait()
		close(codes)
		for code := range codes {
			if code != 200 {
				t.Fatalf("a concurrent commit answered %d", code)
			}
		}
		_, out := c.API("GET", "/v1/tx/"+id, nil)
		c.expectOnly(t, rc, "txcc-a", messageIDs(t, out)["txcc-a"])
		// The first subtest committed one tx, this one another: one
		// winning commit each, however many calls.
		if n := AdminValue(t, c.Procs["center"].Admin, `pushgw_center_tx_decided_total{by="api",state="committed"}`); n != 2 {
			t.Fatalf("center counted %v winning api commits, want 2", n)
		}
	})

	t.Run("idempotency key replays the prepare", func(t *testing.T) {
		id, _ := c.prepareTx(t, c.APIKey, []string{"txi-a"}, "x", "order-77", txNoCheck)
		code, out := c.API("POST", "/v1/tx", map[string]any{"target": map[string]any{"kind": "user", "user": "txi-a"}, "payload": "x", "idempotency_key": "order-77"})
		if code != 200 || out["id"] != id || out["replayed"] != true {
			t.Fatalf("replayed prepare: %d %v, want id %s", code, out, id)
		}
	})

	t.Run("bad requests get clear errors", func(t *testing.T) {
		for _, tc := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"target": map[string]any{"kind": "tag", "tag": "bad\x01tag"}, "payload": "x"}, "target.tag"},
			{map[string]any{"target": map[string]any{"kind": "room"}, "payload": "x"}, "target.kind"},
			{map[string]any{"target": map[string]any{"kind": "broadcast", "user": "u"}, "payload": "x"}, "target"},
			{map[string]any{"target": map[string]any{"kind": "broadcast"}, "payload": "x", "qos": 0, "online_only": false}, "online_only"},
			{map[string]any{"target": map[string]any{"kind": "user", "user": "u"}, "payload": "x", "online_only": true}, "online_only"},
			{map[string]any{"target": map[string]any{"kind": "user", "user": "u"}, "payload": "x", "qos": 0}, "qos"},
			{map[string]any{"payload": "x"}, "target"},
			{map[string]any{"target": map[string]any{"kind": "user", "user": "u"}, "payload": "x", "check_timeout": 0}, "check_timeout"},
		} {
			code, out := c.API("POST", "/v1/tx", tc.body)
			if code != 400 || out["code"] != "INVALID_ARGUMENT" || out["field"] != tc.field || out["message"] == "" {
				t.Fatalf("%v: %d %v, want 400 on %s", tc.body, code, out, tc.field)
			}
		}
		code, out := c.API("POST", "/v1/tx", map[string]any{"target": map[string]any{"kind": "tag"}, "payload": "x"})
		if code != 400 || out["field"] != "target.tag" {
			t.Fatalf("tag target without a tag: %d %v", code, out)
		}
		if code, out := c.API("POST", "/v1/tx/123/commit", nil); code != 404 || out["code"] != "NOT_FOUND" {
			t.Fatalf("unknown tx: %d %v", code, out)
		}
		id, _ := c.prepareTx(t, c.APIKey, []string{"txo-a"}, "x", "", txNoCheck)
		if code, out := c.APIWithKey(c.OtherApp.APIKey, "POST", "/v1/tx/"+id+"/commit", nil); code != 404 {
			t.Fatalf("another app committed this app's tx: %d %v", code, out)
		}
		if code, out := c.API("GET", "/v1/tx/abc", nil); code != 400 || out["field"] != "id" {
			t.Fatalf("bad id: %d %v", code, out)
		}
	})
}

// business plays an app's backend answering check-backs. decide picks the
// answer from the request; it may block. It records every call and the
// most calls ever in flight for one tx.
type business struct {
	t      *testing.T
	secret string
	decide func(r *txcheck.Request) string

	mu       sync.Mutex
	calls    map[string][]time.Time
	numbers  map[string][]int // the check number of each call
	inFlight map[string]int
	maxIn    int
	bad      int
	srv      *httptest.Server
}

func newBusiness(t *testing.T, secret string, decide func(r *txcheck.Request) string) *business {
	b := &business{t: t, secret: secret, decide: decide, calls: map[string][]time.Time{}, numbers: map[string][]int{}, inFlight: map[string]int{}}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *business) serve(w http.ResponseWriter, r *http.Request) {
	req, err := txcheck.ReadVerified(b.secret, r, time.Now())
	if err != nil {
		b.mu.Lock()
		b.bad++
		b.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	b.mu.Lock()
	b.calls[req.TxID] = append(b.calls[req.TxID], time.Now())
	b.numbers[req.TxID] = append(b.numbers[req.TxID], req.Check)
	b.inFlight[req.TxID]++
	b.maxIn = max(b.maxIn, b.inFlight[req.TxID])
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlight[req.TxID]--
		b.mu.Unlock()
	}()
	d := b.decide(req)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"decision":%q}`, d)
}

func (b *business) callTimes(id string) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.calls[id]...)
}

// txState reads a tx's state through center.
func (c *Cluster) txState(t *testing.T, key, id string) map[string]any {
	t.Helper()
	code, out := c.APIWithKey(key, "GET", "/v1/tx/"+id, nil)
	if code != 200 {
		t.Fatalf("tx %s: %d %v", id, code, out)
	}
	return out
}

func TestTxCheckBack(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, Heartbeat: txHeartbeat, Centers: 2, ExtraCenterArg: txCenterArgs})
	// Answers by the idempotency key's prefix; "race-" waits for the test.
	release, raceStarted := make(chan struct{}), make(chan struct{})
	var releaseOnce, raceOnce sync.Once
	releaseRace := func() { releaseOnce.Do(func() { close(release) }) }
	biz := newBusiness(t, c.Secret, func(r *txcheck.Request) string {
		if r.MaxChecks != txTestMax {
			t.Errorf("check of %s says max_checks %d, want the app's %d", r.TxID, r.MaxChecks, txTestMax)
		}
		switch {
		case strings.HasPrefix(r.IdempotencyKey, "commit-"):
			return txcheck.Commit
		case strings.HasPrefix(r.IdempotencyKey, "race-"):
			raceOnce.Do(func() { close(raceStarted) })
			<-release
			return txcheck.Rollback
		case strings.HasPrefix(r.IdempotencyKey, "slow-"):
			time.Sleep(50 * time.Millisecond)
		}
		return txcheck.Unknown
	})
	t.Cleanup(releaseRace) // before the business server closes
	c.setCheck(t, c.mainApp(), biz.srv.URL+"/check")
	// The other app's check URL is down: nothing listens there.
	c.setCheck(t, c.OtherApp, "http://"+FreePort(t)+"/check")

	t.Run("undecided and check answers COMMIT is delivered", func(t *testing.T) {
		rc := c.online(t, "cb-commit")
		id, _ := c.prepareTx(t, c.APIKey, []string{"cb-commit"}, "checked", "commit-1", 1)
		var out map[string]any
		Eventually(t, 15*time.Second, "committed by check-back", func() bool {
			out = c.txState(t, c.APIKey, id)
			return out["state"] == "committed"
		})
		if out["decided_by"] != "check-back" || out["checks"].(float64) != 1 {
			t.Fatalf("decision: %v", out)
		}
		c.expectOnly(t, rc, "cb-commit", messageIDs(t, out)["cb-commit"])
		if n := len(biz.callTimes(id)); n != 1 {
			t.Fatalf("business asked %d times about a committed record", n)
		}
	})

	t.Run("UNKNOWN until the max rolls back", func(t *testing.T) {
		rc := c.online(t, "cb-unknown")
		id, _ := c.prepareTx(t, c.APIKey, []string{"cb-unknown"}, "never", "unknown-1", 1)
		Eventually(t, 20*time.Second, "expired after the last check", func() bool {
			return c.txState(t, c.APIKey, id)["state"] == "expired"
		})
		out := c.txState(t, c.APIKey, id)
		if out["decided_by"] != "expiry" || out["checks"].(float64) != txTestMax || len(biz.callTimes(id)) != txTestMax {
			t.Fatalf("expired record: %v after %d calls, want %d checks", out, len(biz.callTimes(id)), txTestMax)
		}
		biz.mu.Lock()
		numbers := fmt.Sprint(biz.numbers[id])
		biz.mu.Unlock()
		if numbers != "[1 2 3]" {
			t.Fatalf("check numbers %s, want [1 2 3]: none repeated, none skipped", numbers)
		}
		if code, out := c.API("POST", "/v1/tx/"+id+"/commit", nil); code != 409 || out["state"] != "expired" {
			t.Fatalf("commit after expiry: %d %v", code, out)
		}
		c.expectOnly(t, rc, "cb-unknown")
	})

	t.Run("check URL down retries then rolls back", func(t *testing.T) {
		id, _ := c.prepareTx(t, c.OtherApp.APIKey, []string{"cb-down"}, "never", "down-1", 1)
		Eventually(t, 20*time.Second, "expired", func() bool {
			return c.txState(t, c.OtherApp.APIKey, id)["state"] == "expired"
		})
		if out := c.txState(t, c.OtherApp.APIKey, id); out["checks"].(float64) != txTestMax {
			t.Fatalf("expired after %v checks, want %d", out["checks"], txTestMax)
		}
		failed := 0.0
		for i := range c.CenterURLs {
			failed += ScrapeAdmin(t, c.Procs[CenterName(i)].Admin)[`pushgw_center_tx_checks_total{outcome="failed"}`]
		}
		if failed < txTestMax {
			t.Fatalf("centers counted %v failed checks, want at least %d", failed, txTestMax)
		}
	})

	t.Run("commit racing a check-back that answers ROLLBACK has one outcome", func(t *testing.T) {
		rc := c.online(t, "cb-race")
		id, _ := c.prepareTx(t, c.APIKey, []string{"cb-race"}, "raced", "race-1", 1)
		select { // the check-back is in the business's hands
		case <-raceStarted:
		case <-time.After(15 * time.Second):
			t.Fatal("no check-back came")
		}
		var wg sync.WaitGroup
		var code int
		var out map[string]any
		wg.Add(1)
		go func() { defer wg.Done(); code, out = c.API("POST", "/v1/tx/"+id+"/commit", nil) }()
		releaseRace()
		wg.Wait()
		var final map[string]any
		Eventually(t, 10*time.Second, "decided", func() bool {
			final = c.txState(t, c.APIKey, id)
			return final["state"] != "prepared"
		})
		switch final["state"] {
		case "committed":
			if code != 200 || final["decided_by"] != "api" {
				t.Fatalf("committed, but the commit answered %d %v; final %v", code, out, final)
			}
			c.expectOnly(t, rc, "cb-race", messageIDs(t, final)["cb-race"])
		case "rolled_back":
			if code != 409 || out["code"] != "TX_ALREADY_DECIDED" || out["state"] != "rolled_back" || final["decided_by"] != "check-back" {
				t.Fatalf("rolled back, but the commit answered %d %v; final %v", code, out, final)
			}
			c.expectOnly(t, rc, "cb-race")
		default:
			t.Fatalf("final state %v", final)
		}
	})

	t.Run("two centers never check one record at the same time", func(t *testing.T) {
		var ids []string
		for i := 0; i < 20; i++ {
			id, _ := c.prepareTx(t, c.APIKey, []string{"cb-conc-" + strconv.Itoa(i)}, "x", "slow-"+strconv.Itoa(i), 1)
			ids = append(ids, id)
		}
		Eventually(t, 30*time.Second, "all expired", func() bool {
			for _, id := range ids {
				if c.txState(t, c.APIKey, id)["state"] != "expired" {
					return false
				}
			}
			return true
		})
		for _, id := range ids {
			if n := len(biz.callTimes(id)); n != txTestMax {
				t.Fatalf("tx %s checked %d times, want exactly %d", id, n, txTestMax)
			}
		}
		biz.mu.Lock()
		maxIn, bad := biz.maxIn, biz.bad
		biz.mu.Unlock()
		if maxIn != 1 || bad != 0 {
			t.Fatalf("at most %d checks of one record in flight (want 1), %d badly signed", maxIn, bad)
		}
		for i := range c.CenterURLs {
			if n := ScrapeAdmin(t, c.Procs[CenterName(i)].Admin)[`pushgw_center_tx_checks_total{outcome="unknown"}`]; n == 0 {
				t.Fatalf("%s made no checks; both should share the work", CenterName(i))
			}
		}
	})
	t.Run("a due record is checked after every center restarted", func(t *testing.T) {
		rc := c.online(t, "cb-restart")
		id, _ := c.prepareTx(t, c.APIKey, []string{"cb-restart"}, "after restart", "commit-restart", 5)
		for i := range c.CenterURLs {
			c.Stop(CenterName(i))
		}
		if n := len(biz.callTimes(id)); n != 0 {
			t.Fatalf("a center checked %d times before both stopped, 5 s after the prepare", n)
		}
		db := c.DB()
		Eventually(t, 20*time.Second, "the record is due while no center runs", func() bool {
			var due int
			err := db.QueryRow("SELECT COUNT(*) FROM tx_messages WHERE id = ? AND state = 1 AND next_check_ms <= ?", id, time.Now().UnixMilli()).Scan(&due)
			return err == nil && due == 1
		})
		for i := range c.CenterURLs {
			c.Start(CenterName(i))
		}
		var out map[string]any
		Eventually(t, 15*time.Second, "committed by check-back after the restart", func() bool {
			out = c.txState(t, c.APIKey, id)
			return out["state"] == "committed"
		})
		c.expectOnly(t, rc, "cb-restart", messageIDs(t, out)["cb-restart"])
		if n := len(biz.callTimes(id)); n != 1 {
			t.Fatalf("business asked %d times, want once", n)
		}
	})
}

// A center killed while its check-back call is in the business's hands:
// the other center takes the record once the lease ends, and only then.
func TestTxCheckBackCenterKilled(t *testing.T) {
	// A 5 s call timeout leaves time to see which center is calling and
	// kill it mid-call; the lease is the least the flags allow for it.
	c := StartCluster(t, Options{Rooms: 1, Heartbeat: txHeartbeat, Centers: 2, ExtraCenterArg: []string{"-tx-check-poll", "100ms", "-tx-check-timeout", "5s", "-tx-check-lease", "9s"}})
	killed := make(chan struct{})
	var killOnce sync.Once
	unblock := func() { killOnce.Do(func() { close(killed) }) }
	var mu sync.Mutex
	calls := 0
	biz := newBusiness(t, c.Secret, func(r *txcheck.Request) string {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			// Answers only once its caller is dead.
			<-killed
			return txcheck.Rollback
		}
		return txcheck.Commit
	})
	t.Cleanup(unblock) // before the business server closes
	c.setCheck(t, c.mainApp(), biz.srv.URL+"/check")
	rc := c.online(t, "cb-kill")
	id, _ := c.prepareTx(t, c.APIKey, []string{"cb-kill"}, "survivor", "kill-1", 1)

	var claimer string
	Eventually(t, 15*time.Second, "a center is checking", func() bool {
		for i := range c.CenterURLs {
			if ScrapeAdmin(t, c.Procs[CenterName(i)].Admin)["pushgw_center_tx_checks_in_flight"] == 1 {
				claimer = CenterName(i)
				return true
			}
		}
		return false
	})
	c.Kill(claimer)
	unblock()
	first := biz.callTimes(id)[0]
	survivor := c.CenterURLs[0]
	if claimer == CenterName(0) {
		survivor = c.CenterURLs[1]
	}
	var out map[string]any
	Eventually(t, 20*time.Second, "committed by the survivor", func() bool {
		code, o := c.txAPI(t, survivor, c.APIKey, "GET", "/v1/tx/"+id, nil)
		out = o
		return code == 200 && o["state"] == "committed"
	})
	times := biz.callTimes(id)
	if len(times) != 2 {
		t.Fatalf("business asked %d times, want 2 (the killed claimer, then the survivor once)", len(times))
	}
	// The lease is 9 s from the claim, which came just before the first call.
	if gap := times[1].Sub(first); gap < 8*time.Second {
		t.Fatalf("survivor checked %v after the first call, inside the 9 s lease", gap)
	}
	if out["decided_by"] != "check-back" {
		t.Fatalf("decision: %v", out)
	}
	saved := c.CenterURL
	c.CenterURL = survivor
	c.expectOnly(t, rc, "cb-kill", messageIDs(t, out)["cb-kill"])
	c.CenterURL = saved
	if n := len(biz.callTimes(id)); n != 2 {
		t.Fatalf("business asked %d times after the decision", n)
	}
}

// A prepared record is in MySQL, not in memory: MariaDB killed with
// SIGKILL and restarted still has it, and it is committed and delivered.
func TestTxSurvivesMariaDBKill(t *testing.T) {
	db := mariadbtest.Start(t)
	c := StartCluster(t, Options{Rooms: 1, Heartbeat: txHeartbeat, MySQLRoot: db.RootDSN()})
	rc := c.online(t, "tx-crash")
	id, _ := c.prepareTx(t, c.APIKey, []string{"tx-crash"}, "durable", "", txNoCheck)
	db.Kill()
	if code, out := c.API("POST", "/v1/tx/"+id+"/commit", nil); code != 503 {
		t.Fatalf("commit with MariaDB down: %d %v, want 503", code, out)
	}
	db.Restart()
	var code int
	var out map[string]any
	Eventually(t, 30*time.Second, "commit after the restart", func() bool {
		code, out = c.API("POST", "/v1/tx/"+id+"/commit", nil)
		return code == 200
	})
	if out["state"] != "committed" {
		t.Fatalf("commit after restart: %d %v", code, out)
	}
	c.expectOnly(t, rc, "tx-crash", messageIDs(t, out)["tx-crash"])
}

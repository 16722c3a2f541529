package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Several apps on one connection and login policies (docs/protocol.md
// §4.2, §4.3) on a real two-room cluster.
func TestBindAndLoginPolicy(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2, Heartbeat: 10 * time.Second})
	// Center finds saver through discovery a moment after start; on a
	// loaded box the first pushes can come before that (503).
	Eventually(t, 30*time.Second, "center stores pushes", func() bool {
		code, _ := c.API("POST", "/v1/push", map[string]any{"app": c.App, "user": "warm-up", "payload": "x", "qos": 1})
		return code == 200
	})
	c.updateApp(c.App, func(a *appconfig.App) { a.Vendor = "acme" })
	c.updateApp(c.OtherApp.Name, func(a *appconfig.App) { a.Vendor = "acme" })
	t.Run("bound app gets its pushes until UNBIND", func(t *testing.T) { testBoundAppPushes(t, c) })
	t.Run("refused BIND keeps the connection", func(t *testing.T) { testBindRefusedCluster(t, c) })
	t.Run("one device: a new login kicks the older one on another room", func(t *testing.T) { testLoginPolicyOne(t, c) })
	t.Run("one per platform", func(t *testing.T) { testLoginPolicyPerPlatform(t, c) })
	t.Run("pushctl listen --bind", func(t *testing.T) { testPushctlBind(t, c) })
	t.Run("one device: register down at login", func(t *testing.T) { testLoginPolicyRegisterDown(t, c) })
	// Last: it kills a room.
	t.Run("SDK binds again after a reconnect", func(t *testing.T) { testSDKBind(t, c) })
}

// pushctl listen --bind prints the bound app's message: stored while the
// user was away, it arrives on the BIND's pull.
func testPushctlBind(t *testing.T, c *Cluster) {
	code, out := c.APIWithKey(c.OtherApp.APIKey, "POST", "/v1/push", map[string]any{
		"app": c.OtherApp.Name, "user": "ctl-other", "payload": "via bind", "qos": 1})
	if code != 200 {
		t.Fatalf("push: %d %v", code, out)
	}
	cmd := exec.Command(filepath.Join(c.binDir, "pushctl"), "listen", "--app", c.App, "--user", "ctl",
		"--secret", c.Secret, "--dispatcher", c.DispatcherURL, "--count", "1", "--timeout", "30s",
		"--bind", c.OtherApp.Name+"="+c.otherToken("ctl-other", ""))
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("pushctl listen --bind: %v\n%s", err, got)
	}
	var line struct {
		App     string `json:"app"`
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(got, &line); err != nil || line.App != c.OtherApp.Name || line.Payload != "via bind" {
		t.Fatalf("pushctl listen --bind printed %q (%v)", got, err)
	}
}

func testSDKBind(t *testing.T, c *Cluster) {
	s := startSDK(t, c, "sdk-bind", "phone")
	Eventually(t, 20*time.Second, "SDK connected", func() bool { return s.Endpoint() != "" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Bind(ctx, c.OtherApp.Name, c.otherToken("sdk-bind-other", "")); err != nil {
		t.Fatalf("Bind: %v", err)
	}
	pushOther := func() uint64 {
		code, out := c.APIWithKey(c.OtherApp.APIKey, "POST", "/v1/push", map[string]any{
			"app": c.OtherApp.Name, "user": "sdk-bind-other", "payload": "x", "qos": 1})
		if code != 200 {
			t.Fatalf("push: %d %v", code, out)
		}
		id, _ := strconv.ParseUint(fmt.Sprint(out["id"]), 10, 64)
		return id
	}
	id := pushOther()
	Eventually(t, 20*time.Second, "bound app's push handled", func() bool { return s.Count(id) == 1 })
	// Its room dies: the SDK reconnects to the other and binds again.
	ep := s.Endpoint()
	for i, tcp := range c.RoomTCP {
		if tcp == ep {
			c.Kill(RoomName(i))
		}
	}
	Eventually(t, 30*time.Second, "SDK on the other room", func() bool { e := s.Endpoint(); return e != "" && e != ep })
	id = pushOther()
	Eventually(t, 30*time.Second, "bound app's push after the reconnect", func() bool { return s.Count(id) == 1 })
	if err := s.Unbind(ctx, c.OtherApp.Name); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
	if got := s.Bound(); len(got) != 0 {
		t.Fatalf("Bound() = %v after Unbind", got)
	}
}

// updateApp changes an app's config in etcd.
func (c *Cluster) updateApp(app string, change func(*appconfig.App)) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, c.EtcdEndpoints(), 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	if _, err := appconfig.Update(ctx, cli, c.Name, app, func(a *appconfig.App) error { change(a); return nil }); err != nil {
		c.t.Fatal(err)
	}
}

// otherToken mints a token of the cluster's second app.
func (c *Cluster) otherToken(user, device string) string {
	c.t.Helper()
	tok, err := token.Mint([]byte(c.OtherApp.Secret), token.Claims{App: c.OtherApp.Name, User: user, Device: device, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// bindReply sends BIND and reads frames up to its BIND_REPLY.
func (rc *RawClient) bindReply(tok string) *clientpb.BindReply {
	rc.t.Helper()
	seq := rc.Send(protocol.OpBind, &clientpb.Bind{Token: tok})
	for {
		f, m, err := rc.Read(10 * time.Second)
		if err != nil {
			rc.t.Fatalf("BIND: %v", err)
		}
		if f.Op == protocol.OpBindReply && f.Seq == seq {
			return m.(*clientpb.BindReply)
		}
		if f.Op == protocol.OpError || f.Op == protocol.OpKick {
			rc.t.Fatalf("BIND: got %s %v", f.Op, m)
		}
	}
}

// pingNoPush sends PING and fails on any PUSH before the PONG.
func (rc *RawClient) pingNoPush() {
	rc.t.Helper()
	rc.Send(protocol.OpPing, nil)
	for {
		f, m, err := rc.Read(10 * time.Second)
		if err != nil {
			rc.t.Fatalf("ping: %v", err)
		}
		switch f.Op {
		case protocol.OpPong:
			return
		case protocol.OpPush, protocol.OpKick, protocol.OpError:
			rc.t.Fatalf("got %s %v before PONG", f.Op, m)
		}
	}
}

func testBoundAppPushes(t *testing.T, c *Cluster) {
	rc := Dial(t, c.RoomTCP[0])
	rc.Auth(c.Token("bind-1", "phone", time.Hour))
	// The rooms learn the vendor through their config watch.
	Eventually(t, 20*time.Second, "BIND of the second app accepted", func() bool {
		rep := rc.bindReply(c.otherToken("bind-1-other", ""))
		if code := protocol.Code(rep.GetCode()); code != protocol.CodeOK && code != protocol.CodeBindVendor {
			t.Fatalf("BIND: %v", rep)
		}
		return rep.GetCode() == 0
	})
	push := func(qos int, payload string) uint64 {
		t.Helper()
		code, out := c.APIWithKey(c.OtherApp.APIKey, "POST", "/v1/push", map[string]any{
			"app": c.OtherApp.Name, "user": "bind-1-other", "payload": payload, "qos": qos})
		if code != 200 {
			t.Fatalf("push: %d %v", code, out)
		}
		id, _ := strconv.ParseUint(fmt.Sprint(out["id"]), 10, 64)
		return id
	}
	id := push(1, "for the bound app")
	p, err := rc.NextPush(10 * time.Second)
	if err != nil || p.GetApp() != c.OtherApp.Name || p.GetId() != id {
		t.Fatalf("push to the bound app: %v %v, want id %d of %s", p, err, id, c.OtherApp.Name)
	}
	// The primary app's pushes share the socket.
	mid := c.Push("bind-1", 1, time.Hour, "for the primary app")
	if p, err := rc.NextPush(10 * time.Second); err != nil || p.GetApp() != c.App || p.GetId() != mid {
		t.Fatalf("push to the primary app: %v %v", p, err)
	}
	rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{id, mid}})
	Eventually(t, 20*time.Second, "both acks reach saver under their own app", func() bool {
		code, out := c.APIWithKey(c.OtherApp.APIKey, "GET", "/v1/messages/"+strconv.FormatUint(id, 10), nil)
		return code == 200 && out["state"] == "acked" && c.Status(mid) == "acked"
	})

	seq := rc.Send(protocol.OpUnbind, &clientpb.Unbind{App: c.OtherApp.Name})
	f, m, err := rc.Read(10 * time.Second)
	if err != nil || f.Op != protocol.OpUnbindReply || f.Seq != seq || m.(*clientpb.UnbindReply).GetCode() != 0 {
		t.Fatalf("UNBIND: %s seq %d %v %v", f.Op, f.Seq, m, err)
	}
	push(0, "after unbind")
	stored := push(1, "after unbind, stored")
	rc.pingNoPush()
	// Binding again brings what was stored meanwhile.
	if rep := rc.bindReply(c.otherToken("bind-1-other", "")); rep.GetCode() != 0 {
		t.Fatalf("BIND again: %v", rep)
	}
	if p, err := rc.NextPush(10 * time.Second); err != nil || p.GetId() != stored {
		t.Fatalf("stored push after BIND again: %v %v, want id %d", p, err, stored)
	}
}

func testBindRefusedCluster(t *testing.T, c *Cluster) {
	rc := Dial(t, c.RoomTCP[1])
	rc.Auth(c.Token("bind-2", "phone", time.Hour))
	if rep := rc.bindReply("not-a-token"); protocol.Code(rep.GetCode()) != protocol.CodeTokenInvalid {
		t.Fatalf("bad token: %v", rep)
	}
	if rep := rc.bindReply(c.Token("bind-2", "", time.Hour)); protocol.Code(rep.GetCode()) != protocol.CodeAlreadyBound {
		t.Fatalf("own app: %v", rep)
	}
	rc.pingNoPush()
}

// loginOn authenticates a raw client on a room with a platform.
func (c *Cluster) loginOn(t *testing.T, room int, user, device, platform string) *RawClient {
	t.Helper()
	rc := Dial(t, c.RoomTCP[room])
	rc.Send(protocol.OpAuth, &clientpb.Auth{Token: c.Token(user, device, time.Hour), Platform: platform})
	f, m, err := rc.Read(10 * time.Second)
	if err != nil || f.Op != protocol.OpAuthReply {
		t.Fatalf("login %s/%s: %s %v %v", user, device, f.Op, m, err)
	}
	return rc
}

// kickedWithin reports whether rc gets KICK REPLACED within d.
func kickedWithin(t *testing.T, rc *RawClient, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		f, m, err := rc.Read(time.Until(deadline))
		if err != nil {
			return false
		}
		if f.Op == protocol.OpKick {
			if code := protocol.Code(m.(*clientpb.Kick).GetCode()); code != protocol.CodeReplaced {
				t.Fatalf("KICK %s, want REPLACED", code)
			}
			return true
		}
	}
}

// policyInForce waits until room 0 applies policy to logins: a probe user
// logs in on room 1, then on room 0 from another device of the platform.
func (c *Cluster) policyInForce(t *testing.T, policy string) {
	t.Helper()
	c.updateApp(c.App, func(a *appconfig.App) { a.LoginPolicy = policy })
	n := 0
	Eventually(t, 30*time.Second, "room 0 applies login policy "+policy, func() bool {
		n++
		user := fmt.Sprintf("probe-%s-%d", policy, n)
		old := c.loginOn(t, 1, user, "p1", "ios/1")
		c.loginOn(t, 0, user, "p2", "ios/2")
		return kickedWithin(t, old, 3*time.Second)
	})
}

func testLoginPolicyOne(t *testing.T, c *Cluster) {
	c.policyInForce(t, appconfig.LoginOne)
	older := c.loginOn(t, 1, "solo", "tablet", "android/14")
	newer := c.loginOn(t, 0, "solo", "phone", "ios/17.4")
	if !kickedWithin(t, older, 10*time.Second) {
		t.Fatal("the older login on room 1 was not kicked")
	}
	newer.pingNoPush()
	// A push finds the one device left.
	id := c.Push("solo", 1, time.Hour, "to the survivor")
	if p, err := newer.NextPush(10 * time.Second); err != nil || p.GetId() != id {
		t.Fatalf("push to the newer login: %v %v", p, err)
	}
}

func testLoginPolicyPerPlatform(t *testing.T, c *Cluster) {
	c.policyInForce(t, appconfig.LoginOnePerPlatform)
	ios := c.loginOn(t, 1, "plat", "iphone", "ios/17.4")
	android := c.loginOn(t, 1, "plat", "pixel", "android/14")
	ios2 := c.loginOn(t, 0, "plat", "ipad", "iOS/18")
	if !kickedWithin(t, ios, 10*time.Second) {
		t.Fatal("the older iOS login was not kicked by the newer iOS one")
	}
	android.pingNoPush()
	ios2.pingNoPush()
	// Both survivors get a push to the user.
	c.Push("plat", 1, time.Hour, "both")
	for _, rc := range []*RawClient{android, ios2} {
		if _, err := rc.NextPush(10 * time.Second); err != nil {
			t.Fatalf("push to a survivor: %v", err)
		}
	}
	c.updateApp(c.App, func(a *appconfig.App) { a.LoginPolicy = "" })
}

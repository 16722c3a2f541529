package main

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
)

func TestParseAdmission(t *testing.T) {
	r, err := parseAdmission([]byte(`{"allow":["10.0.0.0/8","192.168.1.7"],"deny":["10.1.0.0/16"],"connect_rate":5}`))
	if err != nil {
		t.Fatal(err)
	}
	a := newAdmission()
	a.set(r)
	for ip, want := range map[string]verdict{
		"10.2.3.4": admitted, "10.1.2.3": deniedIP, "192.168.1.7": admitted, "192.168.1.8": deniedIP,
		"::ffff:10.2.3.4": admitted, "8.8.8.8": deniedIP,
	} {
		if got := a.check(netip.MustParseAddr(ip), 0); got != want {
			t.Errorf("%s: verdict %d, want %d", ip, got, want)
		}
	}
	// Burst defaults to the rate: 5 connects at once, then one per 200 ms.
	ip := netip.MustParseAddr("10.9.9.9")
	now := int64(time.Hour)
	for i := 0; i < 5; i++ {
		if a.check(ip, now) != admitted {
			t.Fatalf("connect %d refused within the burst", i)
		}
	}
	if a.check(ip, now) != rateLimitedIP {
		t.Fatal("connects beyond the burst admitted")
	}
	if a.check(ip, now+int64(200*time.Millisecond)) != admitted {
		t.Fatal("no connect admitted after the refill interval")
	}
	for _, bad := range []string{`{"deny":["10.0.0.0/33"]}`, `{"allow":["example.com"]}`, `{"connect_rate":-1}`, `not json`} {
		if _, err := parseAdmission([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestAdmission: IP lists and the per-IP connect rate from etcd apply to
// a running room, and unauthenticated connections have their own cap.
func TestAdmission(t *testing.T) { forEachEngine(t, testAdmission) }

func testAdmission(t *testing.T, engine string) {
	e := startEnv(t, engine, func(c *config) { c.maxPreAuth = 2 })
	put := e.putAdmission
	tok := e.token("appA", testSecretA, "sam", "", time.Hour)

	// Pre-auth cap: two connections may wait for AUTH, a third is refused;
	// authenticating one frees its place.
	a, b := e.dial(), e.dial()
	e.waitPreAuth(2)
	e.dial().expectError(protocol.CodeTooManyConnections)
	a.auth(tok, "d1")
	c := e.dial()
	c.auth(tok, "d2")
	b.auth(tok, "d3")

	// Denied: closed without a word; the live connections stay.
	put(`{"deny":["127.0.0.0/8"]}`)
	e.dial().expectClosed()
	// Allow-only, not listing us.
	put(`{"allow":["10.0.0.0/8"]}`)
	e.dial().expectClosed()
	a.ping(1)

	// Per-IP connect rate: a burst of 2, then RATE_LIMITED.
	put(`{"connect_rate":1,"connect_burst":2}`)
	e.dial().auth(tok, "d4")
	e.dial().auth(tok, "d5")
	e.dial().expectError(protocol.CodeRateLimited)

	// Rules removed: everyone is admitted again.
	put("")
	e.dial().auth(tok, "d6")
	if n := e.srv.r.preAuth.Load(); n != 0 {
		t.Fatalf("%d connections counted as unauthenticated, want 0", n)
	}
}

// putAdmission writes the room's admission config to etcd ("" deletes
// it) and waits until the room applied it.
func (e *testEnv) putAdmission(v string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	prev := e.srv.r.adm.rules.Load()
	var err error
	if key := admissionKey(e.cluster); v == "" {
		_, err = e.cli.Delete(ctx, key)
	} else {
		_, err = e.cli.Put(ctx, key, v)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	// The room's etcd watch swaps the rules in: wait for that, not a time.
	waitFor(e.t, "admission rules applied", func() bool { return e.srv.r.adm.rules.Load() != prev })
}

// waitPreAuth waits until the room counts n unauthenticated connections.
func (e *testEnv) waitPreAuth(n int64) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.r.preAuth.Load() != n {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d unauthenticated connections, want %d", e.srv.r.preAuth.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The address a connection came from reaches admission and the session
// register stores, exactly: a /32 rule refuses one source address and not
// its neighbour.
func TestClientAddress(t *testing.T) { forEachEngine(t, testClientAddress) }

func testClientAddress(t *testing.T, engine string) {
	e := startEnv(t, engine, nil)
	dialFrom := func(src string) *tclient {
		t.Helper()
		d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := d.Dial("tcp", e.cfg.tcp)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return &tclient{t: t, nc: nc, r: protocol.NewReader(nc, protocol.MaxBodySizeLimit)}
	}
	dialFrom("127.0.1.9").auth(e.token("appA", testSecretA, "ann", "", time.Hour), "d1")
	var ips []string
	e.srv.r.hub.Range(func(s *session) {
		if s.isAuthed() {
			ips = append(ips, s.regSession().GetClientIp())
		}
	})
	if len(ips) != 1 || ips[0] != "127.0.1.9" {
		t.Fatalf("registered client addresses %q, want [127.0.1.9]", ips)
	}

	e.putAdmission(`{"deny":["127.0.1.9/32"]}`)
	dialFrom("127.0.1.9").expectClosed()
	dialFrom("127.0.1.10").auth(e.token("appA", testSecretA, "bob", "", time.Hour), "d2")
}

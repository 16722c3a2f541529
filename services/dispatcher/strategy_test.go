package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// idcFixture is one IDC: its own etcd prefix (standing for its own etcd),
// its rooms registered the way rooms register, and a real dispatcher
// serving HTTP.
type idcFixture struct {
	t       *testing.T
	cli     *clientv3.Client
	cluster string
	srv     *server
	reg     *prometheus.Registry
	hs      *httptest.Server
	rooms   map[string]*discovery.Registration
}

func startIDC(t *testing.T, ctx context.Context, cli *clientv3.Client, idc string, o serverOptions) *idcFixture {
	t.Helper()
	f := &idcFixture{t: t, cli: cli, cluster: fmt.Sprintf("test-disp-%s-%d", idc, time.Now().UnixNano()), rooms: map[string]*discovery.Registration{}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, r := range f.rooms {
			_ = r.Close(ctx)
		}
		_, _ = cli.Delete(ctx, "/pushgw/"+f.cluster+"/", clientv3.WithPrefix())
	})
	w := discovery.Watch(cli, f.cluster, discovery.ServiceRoom, quietLog())
	t.Cleanup(w.Close)
	if err := w.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	o.idc = idc
	f.reg = prometheus.NewRegistry()
	f.srv = newServer(f.reg, o)
	f.srv.rooms.follow(w)
	f.hs = httptest.NewServer(f.srv.handler())
	t.Cleanup(f.hs.Close)
	return f
}

// addRoom registers a room with a client endpoint, as services/room does.
func (f *idcFixture) addRoom(ctx context.Context, id, endpoint, idc string) {
	f.t.Helper()
	r, err := discovery.Register(ctx, f.cli, f.cluster, discovery.Instance{
		Service: discovery.ServiceRoom, ID: id, Addr: endpoint, Endpoints: map[string]string{"tcp": endpoint}, IDC: idc,
	}, 0, quietLog())
	if err != nil {
		f.t.Fatal(err)
	}
	f.rooms[id] = r
}

type answer struct {
	status  int
	eps     []string
	version int64
	code    string
}

func (f *idcFixture) ask(query string) answer {
	f.t.Helper()
	resp, err := http.Get(f.hs.URL + "/v1/endpoints?" + query)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Endpoints []string `json:"endpoints"`
		Version   int64    `json:"version"`
		Code      string   `json:"code"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		f.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, eps: m.Endpoints, version: m.Version, code: m.Code}
}

// waitAnswer asks until cond holds on the answer (state, not time).
func (f *idcFixture) waitAnswer(query, what string, cond func(answer) bool) answer {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := f.ask(query)
		if a.status == http.StatusOK && cond(a) {
			return a
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("never %s; last answer %+v", what, a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func connectEtcd(t *testing.T, ctx context.Context) *clientv3.Client {
	t.Helper()
	cli, err := discovery.Connect(ctx, []string{testEtcd()}, 3*time.Second)
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestStrategyTwoIDCs runs the whole ordering against real etcd and a
// second real dispatcher as the peer IDC: same first room across calls, a
// draining room left out, an overloaded one last of its IDC, the peer's
// rooms after the local ones and gone once the peer is stale.
func TestStrategyTwoIDCs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli := connectEtcd(t, ctx)
	const overload = 100
	local := startIDC(t, ctx, cli, "dc1", serverOptions{overload: overload})
	peer := startIDC(t, ctx, cli, "dc2", serverOptions{})
	const maxStale = 500 * time.Millisecond
	peers := local.srv.withPeerSet(local.reg, []string{peer.hs.URL}, time.Second, 50*time.Millisecond, maxStale, quietLog())
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go peers.run(pctx)

	for i := 1; i <= 3; i++ {
		local.addRoom(ctx, fmt.Sprintf("a%d", i), fmt.Sprintf("127.0.0.1:%d", 17300+i), "dc1")
	}
	peer.addRoom(ctx, "b1", "127.0.0.1:27301", "dc2")
	peer.addRoom(ctx, "b2", "127.0.0.1:27302", "dc2")
	// A room of another IDC registered in the peer's etcd is not passed on.
	peer.addRoom(ctx, "x1", "127.0.0.1:37301", "dc3")
	localEPs := []string{"127.0.0.1:17301", "127.0.0.1:17302", "127.0.0.1:17303"}
	peerEPs := []string{"127.0.0.1:27301", "127.0.0.1:27302"}

	const q = "app=demo&user=alice"
	a := local.waitAnswer(q, "listed 3 local and 2 peer rooms", func(a answer) bool { return len(a.eps) == 5 })
	if !sameSet(a.eps[:3], localEPs) || !sameSet(a.eps[3:], peerEPs) {
		t.Fatalf("answer %v: want local %v first, then peer %v", a.eps, localEPs, peerEPs)
	}
	if a.version <= 0 {
		t.Fatalf("answer carries version %d", a.version)
	}
	for i := 0; i < 5; i++ {
		if b := local.ask(q); !slices.Equal(b.eps, a.eps) {
			t.Fatalf("call %d: %v, first answer %v", i, b.eps, a.eps)
		}
	}
	// The peer's rooms are ranked by the same hash as its own dispatcher
	// would rank them, so a user keeps its affinity in the other IDC too.
	pa := peer.ask(q)
	if !slices.Equal(a.eps[3:], pa.eps[:2]) {
		t.Fatalf("peer rooms in %v, peer's own order %v", a.eps[3:], pa.eps)
	}

	// The user's first room is marked draining: left out at once, the
	// others keep their order, and the version grows.
	first := a.eps[0]
	local.rooms[roomOf(first)].Update(func(in *discovery.Instance) { in.Draining = true })
	d := local.waitAnswer(q, "left out the draining room", func(b answer) bool { return !slices.Contains(b.eps, first) })
	if !slices.Equal(d.eps, a.eps[1:]) {
		t.Fatalf("after draining %s: %v, want %v", first, d.eps, a.eps[1:])
	}
	if d.version <= a.version {
		t.Fatalf("version %d after a change, was %d", d.version, a.version)
	}

	// The new first room publishes a load over the threshold: it goes
	// after the other local room but stays before the peer IDC.
	busy := d.eps[0]
	local.rooms[roomOf(busy)].Update(func(in *discovery.Instance) { in.Load = overload })
	o := local.waitAnswer(q, "moved the overloaded room last", func(b answer) bool { return len(b.eps) == 4 && b.eps[1] == busy })
	if want := []string{d.eps[1], busy, d.eps[2], d.eps[3]}; !slices.Equal(o.eps, want) {
		t.Fatalf("overloaded %s: %v, want %v", busy, o.eps, want)
	}
	// Below the threshold again it is first again: affinity is kept.
	local.rooms[roomOf(busy)].Update(func(in *discovery.Instance) { in.Load = overload - 1 })
	local.waitAnswer(q, "put the room back first", func(b answer) bool { return slices.Equal(b.eps, d.eps) })

	// A failed local endpoint goes after the peer's rooms too.
	f := local.ask(q + "&failed=" + d.eps[0])
	if want := []string{d.eps[1], d.eps[2], d.eps[3], d.eps[0]}; !slices.Equal(f.eps, want) {
		t.Fatalf("failed %s: %v, want %v", d.eps[0], f.eps, want)
	}

	// The peer IDC goes away: its rooms stop being offered once its last
	// answer is older than maxStale.
	peer.hs.Close()
	local.waitAnswer(q, "dropped the stale peer", func(b answer) bool { return len(b.eps) == 2 })
	if n := counterValue(peers.fetches.WithLabelValues(peer.hs.URL, "error")); n == 0 {
		t.Fatal("no failed peer fetch counted")
	}
}

// TestSlowPeerDoesNotDelayAnswer: a peer that accepts and never answers
// costs the answer nothing; its fetch fails at the deadline and is counted.
func TestSlowPeerDoesNotDelayAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := connectEtcd(t, ctx)
	local := startIDC(t, ctx, cli, "dc1", serverOptions{})
	local.addRoom(ctx, "a1", "127.0.0.1:17301", "dc1")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	const peerTimeout = 3 * time.Second
	slow := "http://" + ln.Addr().String()
	peers := local.srv.withPeerSet(local.reg, []string{slow}, peerTimeout, 50*time.Millisecond, time.Minute, quietLog())
	go peers.run(ctx)

	local.waitAnswer("app=demo&user=bob", "listed the room", func(a answer) bool { return len(a.eps) == 1 })
	start := time.Now()
	// Asked while the first fetch of the peer is still hanging.
	a := local.ask("app=demo&user=bob")
	if took := time.Since(start); took >= peerTimeout {
		t.Fatalf("answer took %v with a hanging peer", took)
	}
	if !slices.Equal(a.eps, []string{"127.0.0.1:17301"}) {
		t.Fatalf("answer %v", a.eps)
	}
	deadline := time.Now().Add(3 * peerTimeout)
	for counterValue(peers.fetches.WithLabelValues(slow, "error")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("hanging peer fetch never failed at its deadline")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func roomOf(endpoint string) string {
	switch endpoint {
	case "127.0.0.1:17301":
		return "a1"
	case "127.0.0.1:17302":
		return "a2"
	case "127.0.0.1:17303":
		return "a3"
	}
	return ""
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

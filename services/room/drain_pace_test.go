package main

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

func TestPacePlan(t *testing.T) {
	for _, rate := range []int{0, 1, 3, 7, 10, 199, 200, 5000, discovery.MaxDrainRate} {
		batch, every := pacePlan(rate)
		r := max(rate, 1)
		if batch < 1 || every <= 0 {
			t.Fatalf("rate %d: batch %d every %v", rate, batch, every)
		}
		// The plan never goes faster than the rate.
		if got := float64(batch) / every.Seconds(); got > float64(r) {
			t.Fatalf("rate %d: plan %d per %v = %.3f/s", rate, batch, every, got)
		}
		if r >= 10 && (every < drainTick*9/10 || every > drainTick*11/10) {
			t.Fatalf("rate %d: batches every %v, want about %v", rate, every, drainTick)
		}
		if r < 10 && batch != 1 {
			t.Fatalf("rate %d: batch %d, want one client at a time", rate, batch)
		}
	}
}

// fakeClock is a virtual clock for pace: wait advances it.
type fakeClock struct{ now time.Duration }

func (c *fakeClock) wait(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	c.now += d
	return true
}

// checkRate asserts that by each send's virtual time t at most
// batch + rate*t sends happened.
func checkRate(t *testing.T, at []time.Duration, rate int) {
	t.Helper()
	batch, _ := pacePlan(rate)
	for k, ts := range at {
		if limit := float64(batch) + float64(rate)*ts.Seconds(); float64(k+1) > limit+1e-9 {
			t.Fatalf("send %d at %v: over batch %d + %d/s", k+1, ts, batch, rate)
		}
	}
}

func TestPaceKeepsTheRate(t *testing.T) {
	for _, rate := range []int{1, 7, 200, 3000} {
		items := make([]int, 1000)
		var clk fakeClock
		var at []time.Duration
		n := pace(context.Background(), items, func() int { return rate }, clk.wait, func(int, time.Duration) bool {
			at = append(at, clk.now)
			return true
		})
		if n != len(items) {
			t.Fatalf("rate %d: sent %d of %d", rate, n, len(items))
		}
		checkRate(t, at, rate)
		// And not much slower: the last send is due at (n-batch)/rate.
		batch, every := pacePlan(rate)
		want := time.Duration((len(items)+batch-1)/batch-1) * every
		if clk.now != want {
			t.Fatalf("rate %d: took %v virtual, want %v", rate, clk.now, want)
		}
	}
}

func TestPaceSkipsClosedAndFollowsRateChanges(t *testing.T) {
	items := make([]int, 400)
	for i := range items {
		items[i] = i
	}
	var clk fakeClock
	var at []time.Duration
	rate := 100
	n := pace(context.Background(), items, func() int { return rate }, clk.wait, func(i int, _ time.Duration) bool {
		if i%2 == 1 {
			return false // already closing: does not use the rate
		}
		at = append(at, clk.now)
		if len(at) == 50 {
			rate = 20 // a new drain request slows it down
		}
		return true
	})
	if n != 200 {
		t.Fatalf("sent %d, want the 200 open ones", n)
	}
	checkRate(t, at[:50], 100)
	// After the change, the gaps are of the new rate: 2 per 100 ms.
	for k := 52; k < len(at); k++ {
		if at[k]-at[k-2] < 100*time.Millisecond {
			t.Fatalf("after the rate change sends %d and %d are %v apart", k-2, k, at[k]-at[k-2])
		}
	}
}

func TestPaceStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var clk fakeClock
	n := pace(ctx, make([]int, 100), func() int { return 1 }, clk.wait, func(int, time.Duration) bool {
		if clk.now >= 5*time.Second {
			cancel()
		}
		return true
	})
	if n != 6 {
		t.Fatalf("sent %d after a cancel at the 6th, want 6", n)
	}
}

func TestTermRateFitsTheStopBudget(t *testing.T) {
	if got := termRate(200, 10); got != 200 {
		t.Fatalf("small room: rate %d, want the configured 200", got)
	}
	for _, n := range []int64{1000, 100_000} {
		r := termRate(200, n)
		batch, every := pacePlan(r)
		batches := (n + int64(batch) - 1) / int64(batch)
		if took := time.Duration(batches-1) * every; took > drainTermWindow {
			t.Fatalf("%d clients at %d/s take %v, over %v", n, r, took, drainTermWindow)
		}
	}
}

func TestRedirectBackoffSpread(t *testing.T) {
	for _, tc := range []struct {
		every    time.Duration
		min, max uint32
	}{
		{100 * time.Millisecond, 100, 1000},
		{2 * time.Second, 100, 2100},
	} {
		for i := 0; i < 1000; i++ {
			if b := redirectBackoff(tc.every); b < tc.min || b > tc.max {
				t.Fatalf("every %v: back-off %d ms outside %d..%d", tc.every, b, tc.min, tc.max)
			}
		}
	}
}

// quietClients keeps test clients that never PING connected for the
// length of a slow drain.
func quietClients(c *config) { c.heartbeat = 30 * time.Second }

// A drain mark in etcd makes a real room publish draining, redirect its
// clients no faster than the mark's rate, and report done once empty.
func TestDrainMarkPacesRedirects(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		e := startEnv(t, engine, quietClients)
		const clients, rate = 12, 8
		conns := make([]*tclient, clients)
		for i := range conns {
			conns[i] = e.dial()
			conns[i].auth(e.token("appA", testSecretA, "pacer", "dev"+string(rune('a'+i)), time.Hour), "dev"+string(rune('a'+i)))
		}
		healthy := make(chan bool, 4)
		d := e.srv.watchDrain(e.cli, prometheus.NewRegistry(), func(ok bool) { healthy <- ok })

		var mu sync.Mutex
		var at []time.Time
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func(c *tclient) {
				defer wg.Done()
				_ = c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
				for {
					f, err := c.r.Read()
					if err != nil {
						return
					}
					if f.Op == protocol.OpRedirect {
						m, _ := protocol.DecodeBody(f)
						if rd, ok := m.(*clientpb.Redirect); !ok || rd.GetReason() != redirectReasonDrain || rd.GetBackoffMs() < redirectBackoffMin {
							t.Errorf("REDIRECT %v", m)
						}
						mu.Lock()
						at = append(at, time.Now())
						mu.Unlock()
					}
				}
			}(c)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		raw, _ := json.Marshal(discovery.DrainMark{Rate: rate, DeadlineSec: 60})
		key := discovery.DrainKey(e.cluster, e.cfg.common.Instance)
		if _, err := e.cli.Put(ctx, key, string(raw)); err != nil {
			t.Fatal(err)
		}
		select {
		case ok := <-healthy:
			if ok {
				t.Fatal("drain made the room healthy")
			}
		case <-ctx.Done():
			t.Fatal("drain did not start")
		}
		select {
		case <-d.Done():
		case <-ctx.Done():
			t.Fatalf("drain not done; %d clients left", e.srv.r.conns.Load())
		}
		wg.Wait()
		if len(at) != clients {
			t.Fatalf("%d REDIRECTs, want %d", len(at), clients)
		}
		sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
		// At most one batch (1 at 8/s) plus rate x elapsed; 50 ms of
		// slack for reads scheduled late on a loaded box.
		batch, _ := pacePlan(rate)
		for k := range at {
			el := at[k].Sub(at[0]) + 50*time.Millisecond
			if float64(k+1) > float64(batch)+rate*el.Seconds() {
				t.Fatalf("REDIRECT %d came %v after the first: faster than %d/s", k+1, at[k].Sub(at[0]), rate)
			}
		}
		// The room told the dispatcher's watch it is draining, and the
		// mark is gone (a restart under this -instance is not drained).
		inst, err := e.cli.Get(ctx, discovery.Key(e.cluster, discovery.ServiceRoom, e.cfg.common.Instance))
		if err != nil || len(inst.Kvs) != 1 {
			t.Fatalf("instance: %v %v", inst, err)
		}
		var in discovery.Instance
		if err := json.Unmarshal(inst.Kvs[0].Value, &in); err != nil || !in.Draining {
			t.Fatalf("instance %s: not draining (%v)", inst.Kvs[0].Value, err)
		}
		if resp, err := e.cli.Get(ctx, key); err != nil || len(resp.Kvs) != 0 {
			t.Fatalf("drain mark left behind: %v %v", resp, err)
		}
	})
}

// Deleting the mark cancels the drain: the clients not yet told stay, and
// the room is offered again.
func TestDrainMarkDeletedUndrains(t *testing.T) {
	e := startEnv(t, engineStd, quietClients)
	conns := make([]*tclient, 6)
	for i := range conns {
		conns[i] = e.dial()
		conns[i].auth(e.token("appA", testSecretA, "undrain", "d"+string(rune('a'+i)), time.Hour), "d"+string(rune('a'+i)))
	}
	health := make(chan bool, 4)
	d := e.srv.watchDrain(e.cli, prometheus.NewRegistry(), func(ok bool) { health <- ok })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := discovery.DrainKey(e.cluster, e.cfg.common.Instance)
	raw, _ := json.Marshal(discovery.DrainMark{Rate: 1})
	if _, err := e.cli.Put(ctx, key, string(raw)); err != nil {
		t.Fatal(err)
	}
	if ok := <-health; ok {
		t.Fatal("drain start set healthy")
	}
	// The first client goes at once; the next one a second later.
	waitFor(t, "the first client redirected", func() bool { return e.srv.r.conns.Load() <= int64(len(conns)-1) })
	if _, err := e.cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-health:
		if !ok {
			t.Fatal("undrain left the room unhealthy")
		}
	case <-ctx.Done():
		t.Fatal("delete of the mark did not cancel the drain")
	}
	if e.srv.r.draining.Load() || e.srv.reg.Instance().Draining {
		t.Fatal("room still draining after the mark was deleted")
	}
	select {
	case <-d.Done():
		t.Fatal("a cancelled drain reported done")
	default:
	}
	left := e.srv.r.conns.Load()
	if left < 3 || left > int64(len(conns)-1) {
		t.Fatalf("%d clients left after a cancel about 1 s into a 1/s drain of %d", left, len(conns))
	}
	// A new client is served, not redirected.
	e.dial().auth(e.token("appA", testSecretA, "undrain", "new", time.Hour), "new")
}

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/sdk"
)

// drainClient is an SDK client that records what it receives and when each
// of its connections ended (a REDIRECT ends one).
type drainClient struct {
	user string

	mu       sync.Mutex
	endpoint string
	got      map[uint64]int
	// left is when a connection to each endpoint last ended.
	left map[string][]time.Time
}

func startDrainClient(t *testing.T, c *Cluster, user string) *drainClient {
	t.Helper()
	d := &drainClient{user: user, got: map[uint64]int{}, left: map[string][]time.Time{}}
	cl, err := sdk.New(sdk.Config{
		DispatcherURL: c.DispatcherURL,
		App:           c.App, User: user, Device: "phone",
		TokenFunc: func(context.Context) (string, error) { return c.Token(user, "phone", time.Hour), nil },
		Handler: func(_ context.Context, m *sdk.Message) error {
			d.mu.Lock()
			d.got[m.ID]++
			d.mu.Unlock()
			return nil
		},
		OnState: func(st sdk.State, ep string) {
			d.mu.Lock()
			defer d.mu.Unlock()
			if st == sdk.StateConnected {
				d.endpoint = ep
				return
			}
			if d.endpoint == ep {
				d.endpoint = ""
				d.left[ep] = append(d.left[ep], time.Now())
			}
		},
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer ccancel()
		_ = cl.Close(cctx)
		<-done
	})
	return d
}

func (d *drainClient) Endpoint() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.endpoint
}

func (d *drainClient) Count(id uint64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.got[id]
}

func (d *drainClient) LeftAt(ep string) []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.left[ep]...)
}

// dispatcherEndpoints asks the dispatcher for a user's room endpoints.
func (c *Cluster) dispatcherEndpoints(t *testing.T, user string) []string {
	t.Helper()
	q := url.Values{"app": {c.App}, "user": {user}, "device": {"phone"}}
	resp, err := http.Get(c.DispatcherURL + "/v1/endpoints?" + q.Encode())
	if err != nil {
		t.Fatalf("dispatcher: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Endpoints []string `json:"endpoints"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		t.Fatalf("dispatcher answered %d", resp.StatusCode)
	}
	return body.Endpoints
}

// exited reports whether a process of the cluster has ended by itself.
func (c *Cluster) exited(name string) bool {
	p := c.Procs[name]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd == nil || p.cmd.Process == nil || syscall.Kill(p.cmd.Process.Pid, 0) != nil
}

// A room drained through `pushctl room drain` at a set rate: the
// dispatcher stops offering it at once, its clients move to the other room
// no faster than the rate, no QoS 1 message is lost, and the room process
// exits once empty.
func TestPacedRoomDrain(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 2})
	const users, rate = 16, 4

	clients := make([]*drainClient, users)
	for i := range clients {
		clients[i] = startDrainClient(t, c, fmt.Sprintf("drainee-%d", i))
	}
	Eventually(t, 30*time.Second, "every client connected", func() bool {
		for _, cl := range clients {
			if roomIndex(c, cl.Endpoint()) < 0 {
				return false
			}
		}
		return true
	})
	// Drain the room holding more clients (rendezvous hashing splits them).
	per := map[int]int{}
	for _, cl := range clients {
		per[roomIndex(c, cl.Endpoint())]++
	}
	victim := 0
	if per[1] > per[0] {
		victim = 1
	}
	victimEP := c.RoomTCP[victim]
	moving := per[victim]
	if moving < 4 {
		t.Fatalf("only %d of %d clients on the fuller room: %v", moving, users, per)
	}

	// The room id as the sessions API reports it.
	var roomID string
	for _, cl := range clients {
		if cl.Endpoint() != victimEP {
			continue
		}
		code, body := c.API(http.MethodGet, "/v1/apps/"+c.App+"/users/"+cl.user+"/sessions", nil)
		if code != http.StatusOK {
			t.Fatalf("sessions: %d %v", code, body)
		}
		for _, s := range body["sessions"].([]any) {
			roomID = s.(map[string]any)["room_id"].(string)
		}
		break
	}
	if roomID != RoomName(victim) {
		t.Fatalf("sessions API names room %q, want %q", roomID, RoomName(victim))
	}

	// An app key is not the admin key.
	if code, body := c.API(http.MethodPost, "/v1/admin/rooms/"+roomID+"/drain", map[string]any{}); code != http.StatusForbidden {
		t.Fatalf("drain with an app key: %d %v, want 403", code, body)
	}
	if code, body := c.APIWithKey("dev-admin-key", http.MethodPost, "/v1/admin/rooms/no-such-room/drain", map[string]any{}); code != http.StatusNotFound {
		t.Fatalf("drain of an unknown room: %d %v, want 404", code, body)
	}

	// On a loaded box saver may still be applying its migrations: wait
	// until a store succeeds before counting on pushes.
	Eventually(t, 60*time.Second, "saver accepts pushes", func() bool {
		code, _ := c.API(http.MethodPost, "/v1/push", map[string]any{"app": c.App, "user": "warm-up", "payload": "x", "qos": 1, "ttl": 60})
		return code == http.StatusOK
	})
	// QoS 1 messages before and during the drain, one per user a round.
	var mu sync.Mutex
	sent := map[uint64]*drainClient{}
	push := func(round string) {
		for _, cl := range clients {
			id := c.Push(cl.user, 1, time.Hour, round)
			mu.Lock()
			sent[id] = cl
			mu.Unlock()
		}
	}
	push("before")

	pushctl := exec.Command(filepath.Join(c.binDir, "pushctl"), "room", "drain", "--center", c.CenterURL,
		"--rate", fmt.Sprint(rate), "--deadline", "2m", roomID)
	pushctl.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
	out, err := pushctl.CombinedOutput()
	if err != nil {
		t.Fatalf("pushctl room drain: %v\n%s", err, out)
	}
	var answer struct {
		ID       string `json:"id"`
		Draining bool   `json:"draining"`
	}
	if err := json.Unmarshal(out, &answer); err != nil || answer.ID != roomID || !answer.Draining {
		t.Fatalf("pushctl room drain printed %s (%v), want the room draining", out, err)
	}
	drainedAt := time.Now()
	// The dispatcher stops offering the room (it sees the same etcd
	// revision the answer waited for; allow it its watch delay).
	Eventually(t, 5*time.Second, "dispatcher leaves the draining room out", func() bool {
		for _, ep := range c.dispatcherEndpoints(t, "someone-new") {
			if ep == victimEP {
				return false
			}
		}
		return true
	})
	// The admin listing shows it draining.
	code, list := c.APIWithKey("dev-admin-key", http.MethodGet, "/v1/admin/rooms", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/admin/rooms: %d %v", code, list)
	}
	sawDraining := false
	for _, r := range list["rooms"].([]any) {
		rm := r.(map[string]any)
		if rm["id"] == roomID && rm["draining"] == true && rm["drain"] != nil {
			sawDraining = true
		}
	}
	if !sawDraining {
		t.Fatalf("GET /v1/admin/rooms does not show %s draining: %v", roomID, list)
	}

	push("during")
	Eventually(t, 60*time.Second, "every client on the other room", func() bool {
		for _, cl := range clients {
			if i := roomIndex(c, cl.Endpoint()); i < 0 || i == victim {
				return false
			}
		}
		return true
	})
	push("after")
	Eventually(t, 60*time.Second, "every QoS 1 message delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id, cl := range sent {
			if cl.Count(id) == 0 {
				return false
			}
		}
		return true
	})
	for id, cl := range sent {
		if n := cl.Count(id); n != 1 {
			t.Errorf("message %d handed to %s %d times, want once", id, cl.user, n)
		}
	}

	// Paced: the moves, as the clients saw them, are no faster than the
	// rate. One batch (1 client at 4/s) may go at once; 150 ms of slack
	// for clients scheduled late on a loaded box.
	var at []time.Time
	for _, cl := range clients {
		if left := cl.LeftAt(victimEP); len(left) > 0 {
			at = append(at, left[0])
		}
	}
	if len(at) != moving {
		t.Fatalf("%d clients left the drained room, want %d", len(at), moving)
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	for k := range at {
		el := at[k].Sub(at[0]) + 150*time.Millisecond
		if float64(k+1) > 1+rate*el.Seconds() {
			t.Fatalf("move %d came %v after the first: faster than %d/s (all: %v)", k+1, at[k].Sub(at[0]), rate, at)
		}
	}
	spread := at[len(at)-1].Sub(at[0])
	t.Logf("%d clients moved in %v (rate %d/s, first %v after the drain call)", moving, spread, rate, at[0].Sub(drainedAt))

	Eventually(t, 30*time.Second, "drained room process exits", func() bool { return c.exited(RoomName(victim)) })
	Eventually(t, 10*time.Second, "drained room deregistered", func() bool {
		code, list := c.APIWithKey("dev-admin-key", http.MethodGet, "/v1/admin/rooms", nil)
		return code == http.StatusOK && len(list["rooms"].([]any)) == 1
	})
}

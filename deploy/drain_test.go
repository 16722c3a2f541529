package deploy

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushgw/pushgw/test"
)

// The room's readiness (what deploy/k8s probes) turns false as soon as a
// drain starts and stays false while the drain runs, so a load balancer
// in front of it stops sending connections before the room goes.
func TestRoomNotReadyWhileDraining(t *testing.T) {
	c := test.StartCluster(t, test.Options{Rooms: 1})
	admin := c.Procs["room-1"].Admin
	rc := test.Dial(t, c.RoomTCP[0])
	rc.Auth(c.Token("drainer", "phone", time.Hour))
	if code, body := healthz(t, admin); code != http.StatusOK {
		t.Fatalf("before the drain /healthz = %d %q", code, body)
	}
	// A hung register makes the drain wait for its session deletes (up to
	// the drain's flush deadline), so the drain lasts long enough to be
	// observed rather than ending between two polls.
	c.Signal("register", syscall.SIGSTOP)
	t.Cleanup(func() { c.Signal("register", syscall.SIGCONT) })
	c.Signal("room-1", syscall.SIGTERM)

	var saw string
	test.Eventually(t, 5*time.Second, "/healthz 503 while the room drains", func() bool {
		code, body := healthz(t, admin)
		if code == http.StatusServiceUnavailable {
			saw = body
			return true
		}
		if code != http.StatusOK {
			t.Fatalf("during the drain /healthz = %d %q (the admin listener should outlive the drain)", code, body)
		}
		return false
	})
	if !strings.Contains(saw, "draining") {
		t.Fatalf("/healthz while draining = %q, want it to say draining", saw)
	}
	// The client is told to go: the drain is real, not a crash.
	f, _, err := rc.Read(5 * time.Second)
	if err != nil || f.Op.String() != "REDIRECT" {
		t.Fatalf("client got %v (err %v), want REDIRECT", f.Op, err)
	}
}

// healthz returns the status and body of GET /healthz; a refused
// connection is status 0.
func healthz(t *testing.T, admin string) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + admin + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

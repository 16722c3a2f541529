package test

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
)

// pushTo sends one QoS 0 push to center at base and returns the status and
// the Retry-After header.
func (c *Cluster) pushTo(t *testing.T, cl *http.Client, base string) (int, string) {
	req, _ := http.NewRequest("POST", base+"/v1/push", bytes.NewReader([]byte(`{"user":"nobody","payload":"x","qos":0}`)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	resp, err := cl.Do(req)
	if err != nil {
		t.Errorf("push to %s: %v", base, err)
		return 0, ""
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// Two centers sharing one app's limit of 20 pushes/s (burst 10) admit
// together no more than the limit over a 3 s window (± one burst), and
// answer 429 RATE_LIMITED with Retry-After beyond it. Limits kept per
// center would admit about twice as many.
func TestRateLimitAcrossCenters(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1, Centers: 2})
	const rate, burst, window = 20, 10, 3 * time.Second
	c.SetApp(func(a *appconfig.App) { a.PushRate, a.PushBurst = rate, burst })
	cl := &http.Client{Timeout: 5 * time.Second}
	for _, base := range c.CenterURLs {
		// More than a burst back to back: a center applying the limit
		// answers 429 to some of them.
		Eventually(t, 10*time.Second, base+" to apply the limit", func() bool {
			for range 2 * burst {
				if code, _ := c.pushTo(t, cl, base); code == http.StatusTooManyRequests {
					return true
				}
			}
			return false
		})
	}
	var admitted, limited atomic.Int64
	perCenter := make([]atomic.Int64, len(c.CenterURLs))
	var badRetry atomic.Value
	deadline := time.Now().Add(window)
	var wg sync.WaitGroup
	for i, base := range c.CenterURLs {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					code, retry := c.pushTo(t, cl, base)
					switch code {
					case http.StatusOK:
						admitted.Add(1)
						perCenter[i].Add(1)
					case http.StatusTooManyRequests:
						limited.Add(1)
						if n, err := strconv.Atoi(retry); err != nil || n < 1 {
							badRetry.Store(retry)
						}
					default:
						t.Errorf("push: status %d", code)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("in %v: %d admitted (%d + %d per center), %d answered 429", window, admitted.Load(), perCenter[0].Load(), perCenter[1].Load(), limited.Load())
	if v := badRetry.Load(); v != nil {
		t.Fatalf("429 with Retry-After %q, want whole seconds >= 1", v)
	}
	if limited.Load() == 0 {
		t.Fatal("no request was limited: the load did not exceed the limit")
	}
	most := int64(rate*window.Seconds()) + 2*burst
	least := int64(rate * window.Seconds() / 2)
	if n := admitted.Load(); n > most || n < least {
		t.Fatalf("%d admitted in %v, want %d..%d (limit %d/s, burst %d, shared by both centers)", n, window, least, most, rate, burst)
	}
	if perCenter[0].Load() == 0 || perCenter[1].Load() == 0 {
		t.Fatal("one center admitted nothing")
	}
	code, out := c.API("POST", "/v1/push", map[string]any{"user": "nobody", "payload": "x", "qos": 0})
	for code != http.StatusTooManyRequests {
		code, out = c.API("POST", "/v1/push", map[string]any{"user": "nobody", "payload": "x", "qos": 0})
	}
	if out["code"] != "RATE_LIMITED" || out["message"] == "" {
		t.Fatalf("429 body %v, want code RATE_LIMITED and a message", out)
	}
}

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Broadcasts under faults: a slow stream of QoS 1 broadcasts, one at a
// time, alternating centers, beside the pushes. A broadcast is never
// retried: it has no idempotency key, so a retry after a lost answer is a
// second broadcast that every client would get too. Each client must hand
// each acknowledged broadcast to its application exactly once: live,
// through the resend sweep, or by catch-up after a reconnect (the fleet
// keeps each user's last broadcast seq across restarts, as an app saving
// it would).

// broadcastTTL keeps every broadcast catchable past the end of a run.
const broadcastTTL = time.Hour

type bcastAttempt struct {
	acked bool
	id    uint64
	sent  time.Time
	err   string
}

// bcastChecker matches broadcasts sent with broadcasts handed to clients.
type bcastChecker struct {
	mu    sync.Mutex
	users []string
	sent  map[string]*bcastAttempt       // by payload key
	got   map[string]map[string][]uint64 // key -> user -> ids handed over
}

func newBcastChecker(users []string) *bcastChecker {
	return &bcastChecker{users: users, sent: map[string]*bcastAttempt{}, got: map[string]map[string][]uint64{}}
}

func (c *bcastChecker) attempted(key string) {
	c.mu.Lock()
	c.sent[key] = &bcastAttempt{sent: time.Now()}
	c.mu.Unlock()
}

func (c *bcastChecker) finished(key string, id uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.sent[key]
	if err != nil {
		a.err = errClass(err)
		return
	}
	a.acked, a.id = true, id
}

func (c *bcastChecker) delivered(key, user string, id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got[key] == nil {
		c.got[key] = map[string][]uint64{}
	}
	c.got[key][user] = append(c.got[key][user], id)
}

// missing counts (acknowledged broadcast, user) pairs not delivered yet.
func (c *bcastChecker) missing() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, a := range c.sent {
		if !a.acked {
			continue
		}
		for _, u := range c.users {
			if len(c.got[k][u]) == 0 {
				n++
			}
		}
	}
	return n
}

// BroadcastResult counts (broadcast, client) pairs.
type BroadcastResult struct {
	Attempted    int `json:"attempted"`
	Acknowledged int `json:"acknowledged"`
	Failed       int `json:"failed"`
	// Expected is acknowledged broadcasts times clients.
	Expected  int `json:"expected_deliveries"`
	Delivered int `json:"delivered"`
	// Lost: an acknowledged broadcast a client never got.
	Lost int `json:"lost"`
	// Duplicated: a broadcast handed to one client's application twice.
	Duplicated int `json:"duplicated"`
	// Unexpected: never attempted, or under an id center did not answer.
	Unexpected int `json:"unexpected"`
	// Recovered: not acknowledged, delivered anyway (to some client).
	Recovered int            `json:"recovered"`
	FailedBy  map[string]int `json:"failed_by,omitempty"`
	Problems  []string       `json:"problems,omitempty"`
}

func (r *BroadcastResult) passed() bool { return r.Lost == 0 && r.Duplicated == 0 && r.Unexpected == 0 }

func (c *bcastChecker) result() *BroadcastResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &BroadcastResult{Attempted: len(c.sent), FailedBy: map[string]int{}}
	problem := func(format string, a ...any) {
		if len(r.Problems) < maxProblems {
			r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
		}
	}
	keys := make([]string, 0, len(c.sent))
	for k := range c.sent {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := c.sent[k]
		if !a.acked {
			r.Failed++
			r.FailedBy[a.err]++
			if len(c.got[k]) > 0 {
				r.Recovered++
			}
			continue
		}
		r.Acknowledged++
		r.Expected += len(c.users)
		for _, u := range c.users {
			ids := c.got[k][u]
			switch {
			case len(ids) == 0:
				r.Lost++
				problem("lost: broadcast %s (id %d, sent %s) never reached %s", k, a.id, a.sent.UTC().Format(time.RFC3339Nano), u)
			case len(ids) > 1:
				r.Duplicated++
				problem("duplicated: broadcast %s reached %s %d times", k, u, len(ids))
			}
		}
	}
	for k, byUser := range c.got {
		a := c.sent[k]
		for u, ids := range byUser {
			r.Delivered += len(ids)
			for _, id := range ids {
				if a == nil || (a.acked && a.id != id) {
					r.Unexpected++
					problem("unexpected: broadcast %s id %d to %s", k, id, u)
				}
			}
		}
	}
	return r
}

// bcastWriter sends one broadcast every `every`, one call at a time.
type bcastWriter struct {
	app, apiKey string
	centers     []string
	every       time.Duration
	chk         *bcastChecker
	hc          *http.Client
}

func (w *bcastWriter) run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		key := fmt.Sprintf("b%05d", n)
		w.chk.attempted(key)
		id, err := w.call(w.centers[n%len(w.centers)], key)
		w.chk.finished(key, id, err)
	}
}

func (w *bcastWriter) call(center, key string) (uint64, error) {
	body, _ := json.Marshal(map[string]any{"app": w.app, "payload": key, "qos": 1, "ttl": int(broadcastTTL / time.Second)})
	return postForID(w.hc, center+"/v1/broadcast", w.apiKey, body)
}

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// pushTimeout is the writer's deadline for one API call; an answer
	// later than that counts as "not acknowledged".
	pushTimeout = 5 * time.Second
	// maxInflight bounds concurrent API calls, so a hung center cannot
	// make the writer pile up goroutines.
	maxInflight = 256
	// messageTTL keeps every message alive well past the end of a run.
	messageTTL = time.Hour
	// retryBackoff is the wait before a writer's first retry, doubling.
	retryBackoff = 250 * time.Millisecond
)

// writer sends QoS 1 pushes at a steady rate, alternating between centers,
// each with a unique payload key. Like a careful business it retries a push
// that was not acknowledged, on the other center, with the same
// idempotency key (the payload key): one attempt is one message to the
// checker however many calls it took, and a retry that stored a second
// copy shows up as unexpected (an id center did not acknowledge) or
// duplicated. With retries off, an unanswered attempt that arrives anyway
// is what "recovered" measures.
type writer struct {
	app, apiKey string
	centers     []string
	users       []string
	rate        int
	retries     int
	chk         *checker
	hc          *http.Client

	seq     atomic.Int64
	skipped atomic.Int64 // ticks dropped because maxInflight calls were open
	wg      sync.WaitGroup
}

func newWriter(app, apiKey string, centers, users []string, rate, retries int, chk *checker) *writer {
	return &writer{
		app: app, apiKey: apiKey, centers: centers, users: users, rate: rate, retries: retries, chk: chk,
		hc: &http.Client{Timeout: pushTimeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: maxInflight, IdleConnTimeout: 30 * time.Second,
		}},
	}
}

// run sends until ctx is done, then waits for the calls still open.
func (w *writer) run(ctx context.Context) {
	paced(ctx, w.rate, &w.wg, &w.seq, func() { w.skipped.Add(1) }, w.push)
}

// paced calls one(n) rate times a second, each in its own goroutine with at
// most maxInflight open, until ctx is done, then waits for them. A tick
// that finds maxInflight calls open is skipped (and told to skip).
func paced(ctx context.Context, rate int, wg *sync.WaitGroup, seq *atomic.Int64, skip func(), one func(n int64)) {
	sem := make(chan struct{}, maxInflight)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			skip()
			continue
		}
		n := seq.Add(1)
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			one(n)
		}()
	}
}

func (w *writer) push(n int64) { w.pushTo(n, w.users[int(n)%len(w.users)]) }

// burstConcurrency bounds the API calls of a burst.
const burstConcurrency = 32

// burst sends perUser extra pushes to each of users, besides the steady
// load, and returns when all were answered: a backlog for users who are
// away.
func (w *writer) burst(users []string, perUser int) {
	sem := make(chan struct{}, burstConcurrency)
	var wg sync.WaitGroup
	for i := 0; i < perUser; i++ {
		for _, u := range users {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				w.pushTo(w.seq.Add(1), u)
			}()
		}
	}
	wg.Wait()
}

func (w *writer) pushTo(n int64, user string) {
	a := &attempt{
		key:    fmt.Sprintf("m%07d", n),
		user:   user,
		center: int(n) % len(w.centers),
		sent:   time.Now(),
	}
	w.chk.attempted(a)
	id, err := w.call(a)
	for try := 0; err != nil && try < w.retries; try++ {
		time.Sleep(retryBackoff << try)
		a.center = (a.center + 1) % len(w.centers)
		id, err = w.call(a)
	}
	if err != nil {
		w.chk.finished(a.key, false, 0, errClass(err))
		return
	}
	w.chk.finished(a.key, true, id, "")
}

// apiError is a non-200 answer from center.
type apiError struct {
	status int
	code   string
}

func (e *apiError) Error() string { return fmt.Sprintf("http %d %s", e.status, e.code) }

func (w *writer) call(a *attempt) (uint64, error) {
	body, _ := json.Marshal(map[string]any{
		"app": w.app, "user": a.user, "payload": a.key, "qos": 1, "ttl": int(messageTTL / time.Second),
		"idempotency_key": a.key,
	})
	return postForID(w.hc, w.centers[a.center]+"/v1/push", w.apiKey, body)
}

// postForID posts a JSON body with the app key and reads the id of a 200
// answer; any other status becomes an *apiError carrying the answer's code.
func postForID(hc *http.Client, url, apiKey string, body []byte) (uint64, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		ID   string `json:"id"`
		Code string `json:"code"`
	}
	derr := json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusOK {
		return 0, &apiError{status: resp.StatusCode, code: out.Code}
	}
	if derr != nil {
		return 0, fmt.Errorf("decode answer: %w", derr)
	}
	id, err := strconv.ParseUint(out.ID, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("bad id %q in a 200 answer", out.ID)
	}
	return id, nil
}

// errClass turns an error into a short, countable class.
func errClass(err error) string {
	var ae *apiError
	var ne net.Error
	switch {
	case errors.As(err, &ae):
		return ae.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "other: " + err.Error()
	}
}

package faults

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// The checker follows Jepsen's total-queue model: every push the writer
// attempted is either acknowledged by center (200 with an id) or not
// (error, timeout, refused). Every message the application handler saw is
// matched against the attempts by its unique payload key, which exists
// even for attempts that never got an id.

// attempt is one push the writer tried.
type attempt struct {
	key    string
	user   string
	center int
	sent   time.Time
	acked  bool
	id     uint64 // set when acked
	// answered is when the API gave its final answer: the part of a
	// message's latency spent before it was accepted (a store waiting on
	// MariaDB, the writer's retries) rather than on its way to the client.
	answered time.Time
	err      string // why it was not acked
}

// delivery is one message handed to a client's handler.
type delivery struct {
	key  string
	user string
	id   uint64
	at   time.Time
}

// window is a span of time in which one fault was active (from injection
// to the end of its settle time), so a problem can be blamed on it.
type window struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Away marks a window in which users were offline on purpose: their
	// messages wait by design, so they stay out of the run's latency.
	Away bool `json:"away,omitempty"`
	// NoRoom marks a window in which the plan left no room serving (both
	// rooms killed, drained or hung at once): its messages wait for the
	// plan's hold, not for a recovery path, so they stay out of the run's
	// latency_ms (the window keeps its own p99 and over_target) and count
	// in latency_ms_with_no_room.
	NoRoom bool `json:"no_room,omitempty"`
}

// checker collects attempts and deliveries; it is safe for concurrent use.
type checker struct {
	mu         sync.Mutex
	attempts   map[string]*attempt // by key
	deliveries []delivery
	windows    []window
	txs        map[string]*txAttempt // transactional pushes, by key (tx.go)
}

func newChecker() *checker {
	return &checker{attempts: map[string]*attempt{}, txs: map[string]*txAttempt{}}
}

func (c *checker) txAttempted(a *txAttempt) {
	c.mu.Lock()
	c.txs[a.key] = a
	c.mu.Unlock()
}

// txFinished records the outcome of a transaction's API calls.
func (c *checker) txFinished(key string, prepared bool, id, decided string) {
	c.mu.Lock()
	if a := c.txs[key]; a != nil {
		a.prepared, a.id, a.decided = prepared, id, decided
	}
	c.mu.Unlock()
}

func (c *checker) attempted(a *attempt) {
	c.mu.Lock()
	c.attempts[a.key] = a
	c.mu.Unlock()
}

// finished records the outcome of an attempt already registered.
func (c *checker) finished(key string, acked bool, id uint64, err string) {
	c.mu.Lock()
	if a := c.attempts[key]; a != nil {
		a.acked, a.id, a.err, a.answered = acked, id, err, time.Now()
	}
	c.mu.Unlock()
}

func (c *checker) delivered(d delivery) {
	c.mu.Lock()
	c.deliveries = append(c.deliveries, d)
	c.mu.Unlock()
}

func (c *checker) addWindow(w window) {
	c.mu.Lock()
	c.windows = append(c.windows, w)
	c.mu.Unlock()
}

// Result is what the checker found. It is printed as JSON.
type Result struct {
	Attempted    int `json:"attempted"`
	Acknowledged int `json:"acknowledged"`
	Failed       int `json:"failed"` // not acknowledged by center
	Delivered    int `json:"delivered"`
	// Lost: acknowledged, never delivered.
	Lost int `json:"lost"`
	// Unexpected: delivered but never attempted, delivered to a user it
	// was not sent to, or under an id center did not give it.
	Unexpected int `json:"unexpected"`
	// Duplicated: handed to the application more than once.
	Duplicated int `json:"duplicated"`
	// Recovered: not acknowledged by center but delivered anyway (stored,
	// and the answer was lost to a timeout or a killed center).
	Recovered int `json:"recovered"`
	// Redelivered: raw resends the SDK dropped as duplicates.
	Redelivered uint64 `json:"redelivered_raw"`
	// LatencyMs: from the start of the API call to the handler, for
	// acknowledged messages (but those sent while their user was away on
	// purpose).
	LatencyMs map[string]float64 `json:"latency_ms"`
	// LatencyWithNoRoomMs is latency_ms with the no-room windows' messages
	// counted too.
	LatencyWithNoRoomMs map[string]float64 `json:"latency_ms_with_no_room"`
	Windows             []WindowCounts     `json:"windows"`
	Problems            []Problem          `json:"problems,omitempty"`
	// Slowest are the acknowledged messages that took longest, to tell
	// which recovery path a fault's tail latency came from.
	Slowest []Slow `json:"slowest,omitempty"`
	// FailedBy counts the errors behind unacknowledged attempts.
	FailedBy map[string]int `json:"failed_by,omitempty"`
	// Tx counts the transactional pushes (tx.go), when the run made any.
	Tx *TxResult `json:"tx,omitempty"`
}

// WindowCounts are the counts of one fault window (or "steady").
type WindowCounts struct {
	Name         string `json:"name"`
	Seconds      int    `json:"seconds"`
	Attempted    int    `json:"attempted"`
	Acknowledged int    `json:"acknowledged"`
	Lost         int    `json:"lost"`
	Recovered    int    `json:"recovered"`
	// P99Ms is the latency p99 of acknowledged messages sent in the window.
	P99Ms float64 `json:"p99_ms"`
	// OverTarget counts the window's acknowledged messages slower than
	// latencyTarget: what a window adds to the run's tail.
	OverTarget int `json:"over_target"`
	// NoRoom: the window left no room serving (window.NoRoom).
	NoRoom bool `json:"no_room,omitempty"`
}

// Problem names one message that broke the pass condition.
type Problem struct {
	Kind   string `json:"kind"` // lost, unexpected, duplicated, late
	Key    string `json:"key"`
	ID     uint64 `json:"id,omitempty"`
	User   string `json:"user"`
	Sent   string `json:"sent,omitempty"`
	Window string `json:"window,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Slow is one late delivery.
type Slow struct {
	Key       string  `json:"key"`
	ID        uint64  `json:"id"`
	User      string  `json:"user"`
	Sent      string  `json:"sent"`
	Window    string  `json:"window"`
	LatencyMs float64 `json:"latency_ms"`
	// AnsweredMs is how long after Sent the API answered it (retries
	// included): LatencyMs minus it is the time from acceptance to the
	// client.
	AnsweredMs float64 `json:"answered_ms"`
}

const (
	// latencyTarget is the suite's latency goal in ms (p99 under faults):
	// each window counts its messages over it.
	latencyTarget = 2000
	// maxProblems bounds the list printed; counts stay exact.
	maxProblems = 50
	// maxSlowest is how many of the slowest deliveries are named.
	maxSlowest = 10
)

// Passed reports the pass condition of the suite.
func (r *Result) Passed() bool {
	return r.Lost == 0 && r.Unexpected == 0 && r.Duplicated == 0 && r.Tx.passed()
}

// windowOf names the fault window containing t, or "steady".
func windowOf(ws []window, t time.Time) string { return findWindow(ws, t).Name }

func findWindow(ws []window, t time.Time) window {
	for _, w := range ws {
		if !t.Before(w.Start) && !t.After(w.End) {
			return w
		}
	}
	return window{Name: "steady"}
}

// problems describes the attempts of keys as problems of kind, at most
// maxProblems of them.
func (c *checker) problems(kind string, keys []string) []Problem {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Problem
	for _, k := range keys[:min(len(keys), maxProblems)] {
		if a := c.attempts[k]; a != nil {
			out = append(out, Problem{Kind: kind, Key: k, ID: a.id, User: a.user,
				Sent: a.sent.UTC().Format(time.RFC3339Nano), Window: windowOf(c.windows, a.sent)})
		}
	}
	return out
}

// missing returns the acknowledged keys with no delivery yet.
func (c *checker) missing() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := make(map[string]bool, len(c.deliveries))
	for _, d := range c.deliveries {
		if a := c.attempts[d.key]; a != nil && a.user == d.user && (!a.acked || a.id == d.id) {
			got[d.key] = true
		}
		if a := c.txs[d.key]; a != nil && a.user == d.user {
			got[d.key] = true
		}
	}
	var out []string
	for k, a := range c.attempts {
		if a.acked && !got[k] {
			out = append(out, k)
		}
	}
	for k, a := range c.txs {
		if a.commit && a.prepared && !got[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// result classifies everything recorded so far.
func (c *checker) result() *Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &Result{Attempted: len(c.attempts), Delivered: len(c.deliveries), FailedBy: map[string]int{}}
	problem := func(p Problem) {
		if len(r.Problems) < maxProblems {
			r.Problems = append(r.Problems, p)
		}
	}
	first := map[string]time.Time{}
	count := map[string]int{}
	r.Tx = c.txResult()
	for _, d := range c.deliveries {
		if c.txs[d.key] != nil {
			continue // counted by txResult
		}
		count[d.key]++
		a := c.attempts[d.key]
		switch {
		case a == nil:
			r.Unexpected++
			problem(Problem{Kind: "unexpected", Key: d.key, ID: d.id, User: d.user, Detail: "never attempted"})
			continue
		case a.user != d.user:
			r.Unexpected++
			problem(Problem{Kind: "unexpected", Key: d.key, ID: d.id, User: d.user, Detail: "sent to " + a.user})
			continue
		case a.acked && a.id != d.id:
			r.Unexpected++
			problem(Problem{Kind: "unexpected", Key: d.key, ID: d.id, User: d.user, Detail: fmt.Sprintf("center acknowledged id %d", a.id)})
			continue
		}
		if count[d.key] == 2 {
			r.Duplicated++
			problem(Problem{Kind: "duplicated", Key: d.key, ID: d.id, User: d.user, Window: windowOf(c.windows, a.sent)})
		}
		if t, ok := first[d.key]; !ok || d.at.Before(t) {
			first[d.key] = d.at
		}
	}

	type perWindow struct {
		WindowCounts
		lat []float64
	}
	wins := map[string]*perWindow{}
	order := []string{"steady"}
	wins["steady"] = &perWindow{WindowCounts: WindowCounts{Name: "steady"}}
	for _, w := range c.windows {
		if wins[w.Name] == nil {
			order = append(order, w.Name)
			wins[w.Name] = &perWindow{WindowCounts: WindowCounts{Name: w.Name, NoRoom: w.NoRoom}}
		}
		wins[w.Name].Seconds += int(w.End.Sub(w.Start).Round(time.Second) / time.Second)
	}
	var lat, latAll []float64
	keys := make([]string, 0, len(c.attempts))
	for k := range c.attempts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := c.attempts[k]
		win := findWindow(c.windows, a.sent)
		wname := win.Name
		w := wins[wname]
		w.Attempted++
		at, got := first[k]
		if !a.acked {
			r.Failed++
			r.FailedBy[a.err]++
			if got {
				r.Recovered++
				w.Recovered++
			}
			continue
		}
		r.Acknowledged++
		w.Acknowledged++
		if !got {
			r.Lost++
			w.Lost++
			problem(Problem{Kind: "lost", Key: k, ID: a.id, User: a.user, Sent: a.sent.UTC().Format(time.RFC3339Nano), Window: wname})
			continue
		}
		ms := float64(at.Sub(a.sent).Microseconds()) / 1000
		w.lat = append(w.lat, ms)
		if ms > latencyTarget {
			w.OverTarget++
		}
		if win.Away {
			continue
		}
		latAll = append(latAll, ms)
		r.Slowest = append(r.Slowest, Slow{Key: k, ID: a.id, User: a.user, Sent: a.sent.UTC().Format(time.RFC3339Nano), Window: wname, LatencyMs: ms,
			AnsweredMs: float64(a.answered.Sub(a.sent).Microseconds()) / 1000})
		if win.NoRoom {
			continue
		}
		lat = append(lat, ms)
	}
	sort.Slice(r.Slowest, func(i, j int) bool { return r.Slowest[i].LatencyMs > r.Slowest[j].LatencyMs })
	r.Slowest = r.Slowest[:min(len(r.Slowest), maxSlowest)]
	r.LatencyMs = percentiles(lat)
	r.LatencyWithNoRoomMs = percentiles(latAll)
	for _, n := range order {
		w := wins[n]
		w.P99Ms = percentile(w.lat, 0.99)
		r.Windows = append(r.Windows, w.WindowCounts)
	}
	return r
}

func percentiles(v []float64) map[string]float64 {
	return map[string]float64{
		"p50": percentile(v, 0.50), "p90": percentile(v, 0.90), "p99": percentile(v, 0.99),
		"p999": percentile(v, 0.999), "max": percentile(v, 1),
	}
}

// percentile sorts v in place and returns the nearest-rank percentile.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	i := int(p*float64(len(v))+0.5) - 1
	return v[max(0, min(i, len(v)-1))]
}

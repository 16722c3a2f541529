package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/txcheck"
)

// Transactional pushes beside the steady load (docs/TRANSACTIONS.md). A
// key names what the business wants: "tc…" to be delivered, "tr…" never.
// Half of each are decided by API calls (commit or rollback, retried on
// the other center like the writer's pushes); the other half are left to
// the check-back, which the business server below answers by the key.
// Whatever the faults, a record the business wants rolled back must never
// reach a client, and one it wants committed must reach it, once.
const (
	// txShare: one transaction per txShare steady pushes (at least 1/s).
	txShare = 10
	// Check-back settings of the run's app: quick, and patient enough
	// (txCheckMax checks a second apart) to outlast any fault's window.
	txCheckFirst    = time.Second
	txCheckInterval = time.Second
	txCheckMax      = 60
)

// txAttempt is one transaction the business tried.
type txAttempt struct {
	key      string
	user     string
	commit   bool // what the business wants
	byAPI    bool // decided by an API call, else left to check-back
	sent     time.Time
	prepared bool   // prepare acknowledged
	id       string // tx id, when prepared
	decided  string // the API decision's answer, or why it failed
}

// TxResult is the transactional part of a run's result.
type TxResult struct {
	Attempted int `json:"attempted"`
	Prepared  int `json:"prepared"`
	// WantCommit counts prepared records the business wants delivered.
	WantCommit int `json:"want_commit"`
	Delivered  int `json:"delivered"`
	// RolledBackDelivered: a record the business rolled back reached a
	// client. CommittedTwice: one reached a client more than once, or
	// under two ids. Lost: a prepared record the business committed never
	// arrived. Any of them fails the run.
	RolledBackDelivered int `json:"rolled_back_delivered"`
	CommittedTwice      int `json:"committed_twice"`
	Lost                int `json:"lost"`
	// Conflicts: an API decision answered 409, which the business (always
	// deciding the same way as its check-back answer) must never get.
	Conflicts int `json:"conflicts"`
}

func (r *TxResult) passed() bool {
	return r == nil || (r.RolledBackDelivered == 0 && r.CommittedTwice == 0 && r.Lost == 0 && r.Conflicts == 0)
}

// txWriter prepares and decides transactions.
type txWriter struct {
	app, apiKey string
	centers     []string
	users       []string
	rate        int
	retries     int
	chk         *checker
	hc          *http.Client
	seq         atomic.Int64
	wg          sync.WaitGroup
}

// txBusiness answers check-backs by key and verifies their signatures.
func txBusiness(secret string, bad *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := txcheck.ReadVerified(secret, r, time.Now())
		if err != nil {
			bad.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		d := txcheck.Rollback
		if len(req.IdempotencyKey) > 1 && req.IdempotencyKey[1] == 'c' {
			d = txcheck.Commit
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(txcheck.Answer{Decision: d})
	}))
}

// setTxCheck points the app's check-back at url.
func setTxCheck(etcd, cluster string, a appconfig.App, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{etcd}, 5*time.Second)
	if err != nil {
		return err
	}
	defer cli.Close()
	a.TxCheck = appconfig.TxCheck{CheckURL: url, CheckFirstMs: txCheckFirst.Milliseconds(),
		CheckIntervalMs: txCheckInterval.Milliseconds(), CheckMax: txCheckMax}
	return appconfig.Put(ctx, cli, cluster, a)
}

func (w *txWriter) run(ctx context.Context) {
	paced(ctx, w.rate, &w.wg, &w.seq, func() {}, w.one)
}

// one prepares transaction n and, for the API half, decides it.
func (w *txWriter) one(n int64) {
	a := &txAttempt{user: w.users[int(n)%len(w.users)], commit: n%2 == 0, byAPI: (n/2)%2 == 0, sent: time.Now()}
	want, how, path := "r", "b", "/rollback"
	if a.commit {
		want, path = "c", "/commit"
	}
	if a.byAPI {
		how = "a"
	}
	a.key = fmt.Sprintf("t%s%s%06d", want, how, n)
	w.chk.txAttempted(a)
	center := int(n) % len(w.centers)
	body, _ := json.Marshal(map[string]any{"target": map[string]any{"kind": "user", "user": a.user}, "payload": a.key,
		"ttl": int(messageTTL / time.Second), "idempotency_key": a.key})
	var out map[string]any
	code, err := w.call(center, "/v1/tx", body, &out)
	for try := 0; (err != nil || code != 200) && try < w.retries; try++ {
		time.Sleep(retryBackoff << try)
		center = (center + 1) % len(w.centers)
		code, err = w.call(center, "/v1/tx", body, &out)
	}
	if err != nil || code != 200 {
		w.chk.txFinished(a.key, false, "", fmt.Sprintf("prepare: %d %v", code, err))
		return
	}
	id, _ := out["id"].(string)
	if !a.byAPI {
		w.chk.txFinished(a.key, true, id, "left to check-back")
		return
	}
	path = "/v1/tx/" + id + path
	code, err = w.call(center, path, nil, &out)
	for try := 0; (err != nil || code >= 500) && try < w.retries; try++ {
		time.Sleep(retryBackoff << try)
		center = (center + 1) % len(w.centers)
		code, err = w.call(center, path, nil, &out)
	}
	w.chk.txFinished(a.key, true, id, fmt.Sprintf("%d %v %v", code, out["state"], err))
}

func (w *txWriter) call(center int, path string, body []byte, out *map[string]any) (int, error) {
	req, err := http.NewRequest(http.MethodPost, w.centers[center]+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+w.apiKey)
	resp, err := w.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	*out = map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode, nil
}

// txResult classifies the transactions and their deliveries; c.mu held.
func (c *checker) txResult() *TxResult {
	if len(c.txs) == 0 {
		return nil
	}
	r := &TxResult{Attempted: len(c.txs)}
	count, ids := map[string]int{}, map[string]map[uint64]bool{}
	for _, d := range c.deliveries {
		if c.txs[d.key] == nil {
			continue
		}
		count[d.key]++
		if ids[d.key] == nil {
			ids[d.key] = map[uint64]bool{}
		}
		ids[d.key][d.id] = true
	}
	for k, a := range c.txs {
		if a.prepared {
			r.Prepared++
		}
		if len(a.decided) >= 3 && a.decided[:3] == strconv.Itoa(http.StatusConflict) {
			r.Conflicts++
		}
		got := count[k]
		if got > 0 {
			r.Delivered++
		}
		switch {
		case !a.commit && got > 0:
			r.RolledBackDelivered++
		case a.commit && (got > 1 || len(ids[k]) > 1):
			r.CommittedTwice++
		}
		if a.commit && a.prepared {
			r.WantCommit++
			if got == 0 {
				r.Lost++
			}
		}
	}
	return r
}

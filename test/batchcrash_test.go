package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crashWriters is how many concurrent writers push, so center's store
// batcher carries several requests per Saver.Store when the kills land.
const crashWriters = 24

// crashWriter pushes unique payloads, each retried with its own
// idempotency key until answered, and records what was answered.
type crashWriter struct {
	c        *Cluster
	answered sync.Map // payload -> id
	count    atomic.Int64
	failures atomic.Int64
}

func (w *crashWriter) run(ctx context.Context, n int) {
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := 0; ctx.Err() == nil; i++ {
		payload := fmt.Sprintf("crash-%d-%d", n, i)
		body, _ := json.Marshal(map[string]any{"user": fmt.Sprintf("crash-user-%d", n%8), "payload": payload,
			"qos": 1, "idempotency_key": payload})
		for ctx.Err() == nil {
			id, err := w.push(ctx, hc, body)
			if err == nil {
				w.answered.Store(payload, id)
				w.count.Add(1)
				break
			}
			w.failures.Add(1)
			select { // the same key again: the retry must not store twice
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func (w *crashWriter) push(ctx context.Context, hc *http.Client, body []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.c.CenterURL+"/v1/push", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+w.c.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	return strconv.ParseUint(out.ID, 10, 64)
}

// Saver and center are killed (SIGKILL) while concurrent pushes go
// through the store batcher; afterwards every answered push is in MySQL
// under its answered id, and no push is stored twice.
func TestBatchedStoresSurviveKills(t *testing.T) {
	c := StartCluster(t, Options{Rooms: 1})
	w := &crashWriter{c: c}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for n := 0; n < crashWriters; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, n)
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	waitAnswered := func(more int64, what string) {
		t.Helper()
		target := w.count.Load() + more
		Eventually(t, 90*time.Second, what, func() bool { return w.count.Load() >= target })
	}
	waitAnswered(200, "pushes answered before the kills")
	batches := AdminValue(t, c.Procs["center"].Admin, "pushgw_center_store_batch_messages_count")
	msgs := AdminValue(t, c.Procs["center"].Admin, "pushgw_center_store_batch_messages_sum")
	if batches == 0 || msgs <= batches {
		t.Fatalf("%v messages in %v Store calls: the load is not batched", msgs, batches)
	}

	c.Kill("saver")
	c.Start("saver")
	waitAnswered(200, "pushes answered after saver's kill")
	c.Kill("center")
	c.Start("center")
	waitAnswered(200, "pushes answered after center's kill")
	c.Kill("saver")
	c.Kill("center")
	c.Start("saver")
	c.Start("center")
	waitAnswered(200, "pushes answered after both were killed")
	cancel()
	wg.Wait()
	if w.failures.Load() == 0 {
		t.Fatal("no push failed: the kills did not land during stores")
	}

	db := c.DB()
	qctx, qcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer qcancel()
	rows, err := db.QueryContext(qctx, "SELECT payload, COUNT(*) FROM messages WHERE payload LIKE 'crash-%' GROUP BY payload HAVING COUNT(*) > 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p string
		var k int
		if err := rows.Scan(&p, &k); err != nil {
			t.Fatal(err)
		}
		t.Errorf("push %s stored %d times", p, k)
	}
	rows.Close()
	stored := map[uint64]string{}
	rows, err = db.QueryContext(qctx, "SELECT id, payload FROM messages WHERE payload LIKE 'crash-%'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id uint64
		var p string
		if err := rows.Scan(&id, &p); err != nil {
			t.Fatal(err)
		}
		stored[id] = p
	}
	rows.Close()
	answered := 0
	w.answered.Range(func(k, v any) bool {
		answered++
		if p, ok := stored[v.(uint64)]; !ok || p != k.(string) {
			t.Errorf("push %s answered with id %d, but MySQL has %q under it", k, v, p)
		}
		return true
	})
	t.Logf("%d pushes answered, %d failed attempts retried, %d stored; %v messages in %v Store calls before the kills",
		answered, w.failures.Load(), len(stored), msgs, batches)
}

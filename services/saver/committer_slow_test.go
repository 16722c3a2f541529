package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/internal/logbuf"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// TestSlowCommitLogged holds MariaDB's insert lock on the messages table
// past slowCommit and checks that the Store's commit is logged slow, with
// the time on the MySQL side.
func TestSlowCommitLogged(t *testing.T) {
	f := newFixture(t, 10)
	var logs logbuf.Buffer
	c := newCommitter(&msgDB{db: f.sqldb}, &inbox{rdb: f.rdb}, newMetrics(prometheus.NewRegistry()),
		slog.New(slog.NewJSONHandler(&logs, nil)), 1, 16)
	t.Cleanup(c.close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A fast commit is not logged.
	if _, err := c.store(ctx, []*internalpb.Message{msg("app", "u1", "", 0)}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "slow store commit") {
		t.Fatalf("a fast commit was logged slow: %s", logs.String())
	}

	// A locking read to the end of the table blocks every insert of a
	// higher id until the transaction ends.
	tx, err := f.sqldb.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := tx.QueryContext(ctx, "SELECT id FROM messages WHERE id >= 0 FOR UPDATE")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.store(ctx, []*internalpb.Message{msg("app", "u2", "", 0)})
		done <- err
	}()
	// Wait until MariaDB runs the INSERT, which the lock then holds.
	for {
		var running int
		if err := f.sqldb.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE db = DATABASE() AND info LIKE 'INSERT IGNORE INTO messages %'").Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the store finished while its insert should wait: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The insert is waiting now: keep it waiting past slowCommit.
	time.Sleep(slowCommit)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var line struct {
		Msg     string `json:"msg"`
		Rows    int    `json:"rows"`
		MySQLMs int64  `json:"mysql_ms"`
	}
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if err := json.Unmarshal([]byte(l), &line); err == nil && line.Msg == "saver: slow store commit" {
			break
		}
		line.Msg = ""
	}
	if line.Msg == "" || line.Rows != 1 || line.MySQLMs < slowCommit.Milliseconds() {
		t.Fatalf("no slow-commit line with 1 row and mysql_ms >= %d: %+v in %s", slowCommit.Milliseconds(), line, logs.String())
	}
}

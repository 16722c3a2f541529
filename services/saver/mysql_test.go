package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/proto/internalpb"
)

func TestMySQLFlags(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.db != defaultDBConfig() || c.migrateOnly || c.mysqlReplica != "" {
		t.Fatalf("defaults: %+v migrateOnly=%v replica=%q", c.db, c.migrateOnly, c.mysqlReplica)
	}
	c, err = parseFlags([]string{"-mysql-max-open", "8", "-mysql-max-idle", "2", "-mysql-conn-lifetime", "5m",
		"-mysql-dial-timeout", "1s", "-mysql-read-timeout", "3s", "-mysql-write-timeout", "4s",
		"-mysql-tx-attempts", "5", "-mysql-tx-retry-delay", "10ms", "-mysql-replica", "ro@tcp(10.0.0.2:3306)/pushgw"})
	if err != nil {
		t.Fatal(err)
	}
	want := dbConfig{maxOpen: 8, maxIdle: 2, connMaxLife: 5 * time.Minute, dialTimeout: time.Second,
		readTimeout: 3 * time.Second, writeTimeout: 4 * time.Second, retry: retryPolicy{attempts: 5, baseDelay: 10 * time.Millisecond}}
	if c.db != want || c.mysqlReplica != "ro@tcp(10.0.0.2:3306)/pushgw" {
		t.Fatalf("parsed %+v %q, want %+v", c.db, c.mysqlReplica, want)
	}
	for _, args := range [][]string{
		{"-mysql-max-open", "0"},
		{"-mysql-max-idle", "40"},
		{"-mysql-tx-attempts", "0"},
		{"-mysql-read-timeout", "0s"},
		{"-mysql-conn-lifetime", "10ms"},
		{"migrate", "extra"},
		{"migrat"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		} else if !strings.Contains(err.Error(), "saver:") {
			t.Errorf("parseFlags(%q) error without context: %v", args, err)
		}
	}
	c, err = parseFlags([]string{"migrate", "-mysql", "root@tcp(127.0.0.1:3306)/x"})
	if err != nil || !c.migrateOnly || c.mysqlDSN != "root@tcp(127.0.0.1:3306)/x" {
		t.Fatalf("saver migrate -mysql …: %+v, %v", c, err)
	}
}

// TestDSNTimeoutsWin: the flags fill only the timeouts a DSN leaves out.
func TestDSNTimeoutsWin(t *testing.T) {
	dc := defaultDBConfig()
	dc.dialTimeout, dc.readTimeout, dc.writeTimeout = time.Second, 2*time.Second, 3*time.Second
	bare, err := parseDSN("root@tcp(127.0.0.1:3306)/x")
	if err != nil {
		t.Fatal(err)
	}
	if c := withTimeouts(bare, dc); c.Timeout != time.Second || c.ReadTimeout != 2*time.Second || c.WriteTimeout != 3*time.Second {
		t.Fatalf("bare DSN: timeouts %v %v %v", c.Timeout, c.ReadTimeout, c.WriteTimeout)
	}
	set, err := parseDSN("root@tcp(127.0.0.1:3306)/x?timeout=7s&readTimeout=8s&writeTimeout=9s")
	if err != nil {
		t.Fatal(err)
	}
	if c := withTimeouts(set, dc); c.Timeout != 7*time.Second || c.ReadTimeout != 8*time.Second || c.WriteTimeout != 9*time.Second {
		t.Fatalf("DSN with timeouts: %v %v %v", c.Timeout, c.ReadTimeout, c.WriteTimeout)
	}
}

// TestMigrateCommandTwice runs "saver migrate" twice on a fresh database:
// the first run applies every migration, the second applies none and
// succeeds.
func TestMigrateCommandTwice(t *testing.T) {
	mcfg := testDSN(t)
	cfg, err := parseFlags([]string{"migrate", "-mysql", mcfg.FormatDSN()})
	if err != nil {
		t.Fatal(err)
	}
	migs, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for run, wantApplied := range []int{len(migs), 0} {
		var buf bytes.Buffer
		if err := migrateOnly(cfg, slog.New(slog.NewJSONHandler(&buf, nil))); err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		if n := strings.Count(buf.String(), `"msg":"migration applied"`); n != wantApplied {
			t.Fatalf("run %d applied %d migrations, want %d:\n%s", run+1, n, wantApplied, buf.String())
		}
		if !strings.Contains(buf.String(), `"msg":"schema up to date"`) {
			t.Fatalf("run %d did not report the schema up to date:\n%s", run+1, buf.String())
		}
	}
	db, err := openDB(context.Background(), mcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != len(migs) {
		t.Fatalf("schema_migrations rows %d (%v), want %d", n, err, len(migs))
	}
}

// TestTxAttempts holds a row lock so every run of the transaction hits a
// real lock wait timeout (1 s, set on the session): the policy runs it
// exactly -mysql-tx-attempts times and returns InnoDB's error.
func TestTxAttempts(t *testing.T) {
	mcfg := testDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := migrate(ctx, mcfg, testLog(), false); err != nil {
		t.Fatal(err)
	}
	short := mcfg.Clone()
	short.Params = map[string]string{"innodb_lock_wait_timeout": "1"}
	db, err := openDB(ctx, short)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "INSERT INTO message_outcomes (id, app, `user`, outcome, delivery_count, at_ms) VALUES (1, 'a', 'u', 2, 1, 0)"); err != nil {
		t.Fatal(err)
	}
	holder, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if _, err := holder.ExecContext(ctx, "UPDATE message_outcomes SET at_ms = 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	p := retryPolicy{attempts: 2, baseDelay: time.Millisecond}
	err = p.inTx(ctx, db, nil, func(tx *sql.Tx) error {
		runs.Add(1)
		_, err := tx.ExecContext(ctx, "UPDATE message_outcomes SET at_ms = 2 WHERE id = 1")
		return err
	})
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != errLockWaitTime {
		t.Fatalf("err = %v, want lock wait timeout %d", err, errLockWaitTime)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("transaction ran %d times, want -mysql-tx-attempts = 2", n)
	}
}

// replicaFixture is a saver whose -mysql-replica is a second database
// with the schema: a row only there proves the read went to the replica.
func replicaFixture(t *testing.T) (*fixture, *sql.DB) {
	t.Helper()
	f := newFixture(t, 10)
	rcfg := testDSN(t)
	ctx := context.Background()
	if err := migrate(ctx, rcfg, testLog(), false); err != nil {
		t.Fatal(err)
	}
	r, err := openReplica(ctx, rcfg, defaultDBConfig(), prometheus.NewRegistry(), testLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	f.srv.db.replica = r
	return f, r.db
}

func TestStatusReadsReplica(t *testing.T) {
	f, rdb := replicaFixture(t)
	const id = 4242
	if _, err := rdb.Exec("INSERT INTO message_outcomes (id, app, `user`, outcome, delivery_count, at_ms) VALUES (?, 'app1', 'u', ?, 1, 5)",
		id, int(internalpb.MessageState_MESSAGE_STATE_ACKED)); err != nil {
		t.Fatal(err)
	}
	r := f.status(t, "app1", id)
	if !r.GetFound() || r.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_ACKED {
		t.Fatalf("status of a row only the replica has: %v", r)
	}
	if n := counterVecSum(f.srv.db.replica.fallbacks); n != 0 {
		t.Fatalf("%v fallbacks to the primary, want 0", n)
	}
}

// TestStatusReplicaBehind: a message the replica has not seen yet is
// answered by the primary.
func TestStatusReplicaBehind(t *testing.T) {
	f, _ := replicaFixture(t)
	m := msg("app1", "lag", "", 0)
	f.store(t, m)
	if r := f.status(t, "app1", m.GetId()); !r.GetFound() || r.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_STORED {
		t.Fatalf("status of a message the replica lacks: %v", r)
	}
	if n := counterValue(f.srv.db.replica.fallbacks.WithLabelValues("not_found")); n != 1 {
		t.Fatalf("not_found fallbacks = %v, want 1", n)
	}
}

// TestStatusReplicaDown: a replica nobody listens on is skipped: Status
// answers from the primary, and within the back-off the replica is not
// tried again.
func TestStatusReplicaDown(t *testing.T) {
	f := newFixture(t, 10)
	dead, err := parseDSN("root@tcp(" + freeport.Addr(t) + ")/nothing")
	if err != nil {
		t.Fatal(err)
	}
	dc := defaultDBConfig()
	dc.dialTimeout = time.Second
	r, err := openReplica(context.Background(), dead, dc, prometheus.NewRegistry(), testLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	f.srv.db.replica = r
	if n := counterValue(r.fallbacks.WithLabelValues("error")); n != 1 {
		t.Fatalf("start-up ping of a dead replica: error fallbacks %v, want 1", n)
	}
	r.downUntil.Store(0) // as if the back-off had passed: try it again
	m := msg("app1", "down", "", 0)
	f.store(t, m)
	for i := 0; i < 2; i++ {
		if s := f.status(t, "app1", m.GetId()); !s.GetFound() {
			t.Fatalf("status %d with the replica down: %v", i, s)
		}
	}
	if e, d := counterValue(r.fallbacks.WithLabelValues("error")), counterValue(r.fallbacks.WithLabelValues("down")); e != 2 || d != 1 {
		t.Fatalf("fallbacks error=%v down=%v, want 2 and 1 (second read skips the replica)", e, d)
	}
}

// TestStatusWithoutReplica: unset, the primary answers and nothing counts.
func TestStatusWithoutReplica(t *testing.T) {
	f := newFixture(t, 10)
	if f.srv.db.replica != nil {
		t.Fatal("fixture has a replica")
	}
	m := msg("app1", "noreplica", "", 0)
	f.store(t, m)
	if s := f.status(t, "app1", m.GetId()); !s.GetFound() {
		t.Fatalf("status without replica: %v", s)
	}
}

package mariadbtest

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// TestCommittedRowsSurviveKillAndStop proves what crash tests rely on: a
// committed row is still there after SIGKILL (crash recovery) and after a
// clean stop, on the same address, through the same *sql.DB.
func TestCommittedRowsSurviveKillAndStop(t *testing.T) {
	began := time.Now()
	s := Start(t)
	t.Logf("Start (install + first start) took %v", time.Since(began))

	db, err := sql.Open("mysql", s.RootDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createTable(ctx, t, db, "before-kill")

	s.Kill()
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("ping succeeded while mariadbd was killed")
	}
	began = time.Now()
	s.Restart()
	t.Logf("Restart after kill (crash recovery) took %v", time.Since(began))
	wantRows(ctx, t, db, "before-kill")

	if _, err := db.ExecContext(ctx, "INSERT INTO t.rows VALUES (2, 'before-stop')"); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	s.Stop()
	s.Restart()
	t.Logf("Stop + Restart took %v", time.Since(began))
	wantRows(ctx, t, db, "before-kill", "before-stop")

	began = time.Now()
	s.Restart()
	t.Logf("Restart of a running server took %v", time.Since(began))
	wantRows(ctx, t, db, "before-kill", "before-stop")
}

// TestUncommittedRowIsRolledBack checks the other half of crash recovery:
// a transaction open at the kill leaves nothing behind.
func TestUncommittedRowIsRolledBack(t *testing.T) {
	s := Start(t)
	db, err := sql.Open("mysql", s.RootDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	createTable(ctx, t, db, "committed")
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t.rows VALUES (2, 'open')"); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	_ = tx.Rollback() // the connection is gone; this only frees it
	s.Restart()
	wantRows(ctx, t, db, "committed")
}

// createTable makes t.rows and commits row 1 with value v.
func createTable(ctx context.Context, t *testing.T, db *sql.DB, v string) {
	t.Helper()
	for _, q := range []string{
		"CREATE DATABASE t",
		"CREATE TABLE t.rows (id INT PRIMARY KEY, v VARCHAR(16)) ENGINE=InnoDB",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t.rows VALUES (1, ?)", v); err != nil {
		t.Fatalf("insert: %v", err)
	}
}

func wantRows(ctx context.Context, t *testing.T, db *sql.DB, want ...string) {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SELECT v FROM t.rows ORDER BY id")
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("rows = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("rows = %q, want %q", got, want)
		}
	}
}

package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

const (
	dbMaxOpen        = 32
	dbMaxIdle        = 16
	dbConnMaxLife    = 30 * time.Minute
	dbPingTimeout    = 5 * time.Second
	maxTxAttempts    = 3
	txRetryBaseDelay = 5 * time.Millisecond

	errDeadlock     = 1213
	errLockWaitTime = 1205
)

// parseDSN parses dsn and turns on client-side parameter interpolation:
// without it every statement costs a prepare and a close round trip, which
// on this CPU-bound MariaDB halves the write rate.
func parseDSN(dsn string) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("saver: -mysql: %w", err)
	}
	cfg.InterpolateParams = true
	if cfg.Timeout == 0 {
		cfg.Timeout = dbPingTimeout
	}
	return cfg, nil
}

// openDB opens a pool and checks that the server answers.
func openDB(ctx context.Context, cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("saver: mysql config: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(dbMaxOpen)
	db.SetMaxIdleConns(dbMaxIdle)
	db.SetConnMaxLifetime(dbConnMaxLife)
	pctx, cancel := context.WithTimeout(ctx, dbPingTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("saver: mysql %s/%s not reachable: %w", cfg.Addr, cfg.DBName, err)
	}
	return db, nil
}

// ensureDatabase creates the DSN's database if it is missing, connecting
// without a database name first.
func ensureDatabase(ctx context.Context, cfg *mysql.Config) error {
	if cfg.DBName == "" {
		return errors.New("saver: -mysql DSN names no database")
	}
	root := cfg.Clone()
	root.DBName = ""
	db, err := openDB(ctx, root)
	if err != nil {
		return err
	}
	defer db.Close()
	q := "CREATE DATABASE IF NOT EXISTS " + quoteIdent(cfg.DBName) + " CHARACTER SET utf8mb4"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("saver: create database %s: %w", cfg.DBName, err)
	}
	return nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// retryable reports the errors InnoDB expects the client to retry.
func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == errDeadlock || me.Number == errLockWaitTime)
}

// inTx runs f in a transaction, retrying it on deadlock; f must be safe to
// run again from scratch.
func inTx(ctx context.Context, db *sql.DB, f func(tx *sql.Tx) error) error {
	return inTxOpts(ctx, db, nil, f)
}

// inTxOpts is inTx with transaction options (an isolation level).
func inTxOpts(ctx context.Context, db *sql.DB, opts *sql.TxOptions, f func(tx *sql.Tx) error) error {
	var err error
	for attempt := 1; attempt <= maxTxAttempts; attempt++ {
		err = runTx(ctx, db, opts, f)
		if err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * txRetryBaseDelay):
		}
	}
	return err
}

func runTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// placeholders returns "?,?,…" for n values.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}

// idArgs turns ids into query arguments.
func idArgs(ids []uint64, extra ...any) []any {
	args := make([]any, 0, len(ids)+len(extra))
	for _, id := range ids {
		args = append(args, id)
	}
	return append(args, extra...)
}

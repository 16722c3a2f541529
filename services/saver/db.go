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

// Defaults of the -mysql-* pool, timeout and retry flags (docs/OPERATIONS.md
// "MySQL"). The pool is per saver process: size MySQL's max_connections for
// savers × -mysql-max-open (+ the replica's the same way).
const (
	dbMaxOpen        = 32
	dbMaxIdle        = 16
	dbConnMaxLife    = 30 * time.Minute
	dbPingTimeout    = 5 * time.Second
	dbReadTimeout    = 30 * time.Second
	dbWriteTimeout   = 30 * time.Second
	maxTxAttempts    = 3
	txRetryBaseDelay = 5 * time.Millisecond

	errDeadlock     = 1213
	errLockWaitTime = 1205
)

// dbConfig is the pool, the socket timeouts and the transaction retry
// policy of one MySQL pool.
type dbConfig struct {
	maxOpen, maxIdle int
	connMaxLife      time.Duration
	// Socket timeouts; a DSN that sets timeout, readTimeout or
	// writeTimeout itself keeps its value.
	dialTimeout, readTimeout, writeTimeout time.Duration
	retry                                  retryPolicy
}

func defaultDBConfig() dbConfig {
	return dbConfig{
		maxOpen: dbMaxOpen, maxIdle: dbMaxIdle, connMaxLife: dbConnMaxLife,
		dialTimeout: dbPingTimeout, readTimeout: dbReadTimeout, writeTimeout: dbWriteTimeout,
		retry: retryPolicy{attempts: maxTxAttempts, baseDelay: txRetryBaseDelay},
	}
}

// withTimeouts returns a copy of cfg with the socket timeouts the DSN left
// unset taken from dc.
func withTimeouts(cfg *mysql.Config, dc dbConfig) *mysql.Config {
	c := cfg.Clone()
	if c.Timeout == 0 {
		c.Timeout = dc.dialTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = dc.readTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = dc.writeTimeout
	}
	return c
}

// retryPolicy is how often and how fast a transaction that InnoDB aborted
// (deadlock, lock wait timeout) is run again. The zero value is the
// default policy, so a msgDB built without one still retries.
type retryPolicy struct {
	attempts  int           // runs in all, at least 1
	baseDelay time.Duration // the wait before run n+1 is n × baseDelay
}

func (p retryPolicy) orDefault() retryPolicy {
	if p.attempts < 1 {
		return defaultDBConfig().retry
	}
	return p
}

// parseDSN parses dsn and turns on client-side parameter interpolation:
// without it every statement costs a prepare and a close round trip, which
// on this CPU-bound MariaDB halves the write rate.
func parseDSN(dsn string) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("saver: -mysql: %w", err)
	}
	cfg.InterpolateParams = true
	return cfg, nil
}

// openDB opens a pool with the default limits and checks that the server
// answers.
func openDB(ctx context.Context, cfg *mysql.Config) (*sql.DB, error) {
	return openPool(ctx, cfg, defaultDBConfig())
}

// openPool opens a pool with dc's limits and timeouts and checks that the
// server answers.
func openPool(ctx context.Context, cfg *mysql.Config, dc dbConfig) (*sql.DB, error) {
	cfg = withTimeouts(cfg, dc)
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("saver: mysql config: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(dc.maxOpen)
	db.SetMaxIdleConns(dc.maxIdle)
	db.SetConnMaxLifetime(dc.connMaxLife)
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

// inTx runs f in a transaction with the default retry policy; f must be
// safe to run again from scratch. msgDB uses its configured policy.
func inTx(ctx context.Context, db *sql.DB, f func(tx *sql.Tx) error) error {
	return inTxOpts(ctx, db, nil, f)
}

// inTxOpts is inTx with transaction options (an isolation level).
func inTxOpts(ctx context.Context, db *sql.DB, opts *sql.TxOptions, f func(tx *sql.Tx) error) error {
	return retryPolicy{}.inTx(ctx, db, opts, f)
}

// inTx runs f in a transaction, running it again on deadlock or lock wait
// timeout up to p.attempts times in all.
func (p retryPolicy) inTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, f func(tx *sql.Tx) error) error {
	return p.run(ctx, func() error { return runTx(ctx, db, opts, f) })
}

// run runs f, a transaction or one autocommitted statement, again on
// deadlock or lock wait timeout up to p.attempts times in all.
func (p retryPolicy) run(ctx context.Context, f func() error) error {
	p = p.orDefault()
	var err error
	for attempt := 1; attempt <= p.attempts; attempt++ {
		err = f()
		if err == nil || !retryable(err) {
			return err
		}
		if attempt == p.attempts {
			break
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * p.baseDelay):
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

// rowPlaceholders returns "(?,?),(?,?),…": rows tuples of width values,
// for multi-row VALUES lists and row IN lists.
func rowPlaceholders(rows, width int) string {
	if rows <= 0 || width <= 0 {
		return ""
	}
	row := "(" + placeholders(width) + ")"
	return strings.Repeat(row+",", rows-1) + row
}

// idArgs turns ids into query arguments.
func idArgs(ids []uint64, extra ...any) []any {
	args := make([]any, 0, len(ids)+len(extra))
	for _, id := range ids {
		args = append(args, id)
	}
	return append(args, extra...)
}

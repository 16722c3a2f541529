package main

import (
	"bufio"
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Migrations are embedded so a saver binary always carries the schema it
// expects. Files are NNNN_name.sql, applied in version order, each once.
// MySQL DDL is not transactional, so statements are written to be
// re-runnable (IF NOT EXISTS): a migration that died half-way is finished
// by the next run.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

const migrateLockTimeout = 60 // seconds

type migration struct {
	version int
	name    string
	body    string
	// contract marks a migration that removes something savers of the
	// previous release still use (a line "-- pushgw:contract"): see
	// migrate.
	contract bool
}

// contractMarker is the line that makes a migration a contract one.
const contractMarker = "-- pushgw:contract"

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("saver: migration %q is not named NNNN_name.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("saver: migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		body, err := migrationFiles.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		contract := false
		for _, line := range strings.Split(string(body), "\n") {
			contract = contract || strings.TrimSpace(line) == contractMarker
		}
		out = append(out, migration{version: v, name: name, body: string(body), contract: contract})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// splitStatements splits a migration at semicolons that end a line and
// drops "--" comment lines, so files need no multiStatements DSN option.
func splitStatements(body string) []string {
	var stmts []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(line, ";") {
			stmts = append(stmts, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}

// migrate creates the database if needed and applies every migration not
// yet recorded in schema_migrations, in version order. A named lock (per
// database) makes two savers starting together take turns; the second
// finds nothing to do.
//
// Schema changes roll out expand, then contract: savers of the previous
// release keep running on the new schema while the new ones start, so a
// migration that drops what they use is a contract migration, applied
// only with contract (saver migrate -contract, once every saver runs the
// new release) or to a fresh database, where no older saver can exist.
// Without it, migrate stops before the first pending contract migration
// (later ones wait too, to keep the order) and says so in the log.
func migrate(ctx context.Context, cfg *mysql.Config, log *slog.Logger, contract bool) error {
	migs, err := loadMigrations()
	if err != nil {
		return err
	}
	if err := ensureDatabase(ctx, cfg); err != nil {
		return err
	}
	// DDL on a large table may run for minutes: no socket timeout shorter
	// than the migration's own deadline.
	dc := defaultDBConfig()
	dc.readTimeout, dc.writeTimeout = migrateTimeout, migrateTimeout
	db, err := openPool(ctx, cfg, dc)
	if err != nil {
		return err
	}
	defer db.Close()
	// GET_LOCK belongs to a session: everything runs on one connection.
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("saver: migrate: %w", err)
	}
	defer conn.Close()
	lock := "pushgw_migrate:" + cfg.DBName
	if len(lock) > 64 {
		lock = lock[:64]
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", lock, migrateLockTimeout).Scan(&got); err != nil {
		return fmt.Errorf("saver: migrate: get lock: %w", err)
	}
	if got.Int64 != 1 {
		return fmt.Errorf("saver: migrate: another process held lock %q for %ds", lock, migrateLockTimeout)
	}
	defer conn.ExecContext(context.Background(), "SELECT RELEASE_LOCK(?)", lock)

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INT          NOT NULL PRIMARY KEY,
  name       VARCHAR(255) NOT NULL,
  applied_ms BIGINT       NOT NULL
) ENGINE=InnoDB`); err != nil {
		return fmt.Errorf("saver: migrate: create schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("saver: migrate: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("saver: migrate: read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("saver: migrate: read schema_migrations: %w", err)
	}
	fresh := len(applied) == 0
	for _, m := range migs {
		if applied[m.version] {
			continue
		}
		if m.contract && !contract && !fresh {
			log.Warn("contract migration pending: run \"saver migrate -contract\" once every saver runs this release",
				"version", m.version, "name", m.name, "database", cfg.DBName)
			return nil
		}
		for i, stmt := range splitStatements(m.body) {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("saver: migration %s statement %d: %w", m.name, i+1, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)",
			m.version, m.name, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("saver: migration %s: record: %w", m.name, err)
		}
		log.Info("migration applied", "version", m.version, "name", m.name, "database", cfg.DBName)
	}
	return nil
}

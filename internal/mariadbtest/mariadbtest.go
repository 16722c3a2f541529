// Package mariadbtest runs a private, real MariaDB server for tests that
// kill or restart MySQL without disturbing the shared one. Its data dir
// survives Stop, Kill and Restart, so tests can check what a crash keeps.
package mariadbtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver pushgw's saver uses
	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/internal/proctest"
)

const (
	// installTimeout bounds mariadb-install-db (about a second when idle).
	installTimeout = 2 * time.Minute
	// probeTimeout bounds one SELECT 1 while waiting for a (re)start.
	probeTimeout = 2 * time.Second
)

// sizeArgs keep the server small and quick to start, for mariadb-install-db
// and mariadbd alike (a differing redo log size would be resized on start).
// innodb_flush_log_at_trx_commit stays at its default of 1: a commit is on
// disk before it returns, which is what crash tests check.
var sizeArgs = []string{
	"--innodb-buffer-pool-size=64M",
	"--innodb-log-file-size=16M",
}

// Server is one mariadbd with a data dir of its own. Stop, Kill, Restart and
// TryRestart come from proctest.Server; Restart keeps the port and the data
// dir, so committed rows survive both a clean stop and a kill.
type Server struct {
	*proctest.Server
	port int
}

// Start creates a data dir, runs mariadbd on a free loopback port and waits
// until root (empty password) can run SELECT 1 over TCP. The test fails
// when MariaDB is not installed; the server is killed when the test
// ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := proctest.Binary(t, "mariadb-server", "mariadbd", "/usr/sbin/mariadbd")
	installDB := proctest.Binary(t, "mariadb-server", "mariadb-install-db", "/usr/bin/mariadb-install-db")
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	install(t, installDB, dataDir)
	sock := socketPath(t)
	s := &Server{}
	s.Server = proctest.Start(t, func() proctest.Spec {
		s.port = freeport.Port(t)
		args := append([]string{
			"--no-defaults", // must come first; ignore the shared server's my.cnf
			"--datadir=" + dataDir,
			"--port=" + strconv.Itoa(s.port),
			"--bind-address=127.0.0.1",
			"--socket=" + sock,
			"--pid-file=" + filepath.Join(dir, "mariadbd.pid"),
			"--tmpdir=" + dir,
			"--skip-name-resolve",
			"--skip-log-bin",
			// As the shared server's my.cnf, so tables behave the same.
			"--character-set-server=utf8mb4",
			"--collation-server=utf8mb4_general_ci",
			// Nothing to gain from warming a throwaway buffer pool.
			"--innodb-buffer-pool-load-at-startup=0",
			"--innodb-buffer-pool-dump-at-shutdown=0",
		}, sizeArgs...)
		args = append(args, userArgs()...)
		dsn := s.RootDSN()
		return proctest.Spec{
			Name:  "mariadbd",
			Bin:   bin,
			Dir:   dir,
			Args:  args,
			Ready: func() error { return selectOne(dsn) },
		}
	})
	return s
}

// Addr is "127.0.0.1:N".
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// RootDSN is a go-sql-driver/mysql DSN for root with no database selected,
// in the same form as the integration tests' shared-server DSN; append a
// database name and parameters as needed.
func (s *Server) RootDSN() string { return "root@tcp(" + s.Addr() + ")/" }

// install creates the system tables in dataDir, with root@localhost and
// root@127.0.0.1 allowed in without a password (not via the unix socket
// only, which is Debian's default).
func install(t testing.TB, installDB, dataDir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	args := append([]string{
		"--no-defaults",
		"--datadir=" + dataDir,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--skip-name-resolve",
	}, sizeArgs...)
	args = append(args, userArgs()...)
	out, err := exec.CommandContext(ctx, installDB, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mariadbtest: %s: %v\n%s", installDB, err, out)
	}
}

// userArgs runs the server as the current user. As root that must be said
// explicitly, or mariadbd refuses to start (and install-db would chown the
// data dir to "mysql").
func userArgs() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// socketPath is a unix socket path for mariadbd. It lives in a short
// directory of its own: t.TempDir's path grows with the test name, and a
// socket path may not exceed 107 bytes.
func socketPath(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "mariadbtest")
	if err != nil {
		t.Fatalf("mariadbtest: socket dir: %v", err)
	}
	// Registered before the server's cleanup, so it runs after the kill.
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "mysqld.sock")
}

// selectOne runs a real query: the server accepts root over TCP and its
// storage engine is up, not merely its port.
func selectOne(dsn string) error {
	db, err := sql.Open("mysql", dsn+"?timeout=1s&readTimeout=2s&writeTimeout=2s")
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("mariadbd SELECT 1: %w", err)
	}
	return nil
}

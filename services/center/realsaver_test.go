package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/pushgw/pushgw/internal/freeport"
	"github.com/pushgw/pushgw/internal/proctest"
	"github.com/pushgw/pushgw/internal/redistest"
)

// testMySQLRoot is the shared MariaDB; each test creates and drops its own
// database there.
const testMySQLRoot = "root@tcp(127.0.0.1:3306)/"

// startRealSaver builds and runs the real saver binary in cluster,
// against a private redis-server and a database of the test's own, so the
// store batcher is tested against saver's real validation, group commit
// and idempotency keys. It returns saver's DSN.
func startRealSaver(t testing.TB, cluster string) (*proctest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "saver")
	build := exec.Command("go", "build", "-o", bin, "github.com/pushgw/pushgw/services/saver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build saver: %v\n%s", err, out)
	}
	dbName := fmt.Sprintf("pushgw_center_test_%d_%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		db, err := sql.Open("mysql", testMySQLRoot)
		if err != nil {
			t.Errorf("drop test database: %v", err)
			return
		}
		defer db.Close()
		if _, err := db.Exec("DROP DATABASE IF EXISTS " + dbName); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	redisAddr := redistest.Start(t).Addr()
	dsn := testMySQLRoot + dbName + "?parseTime=true"
	return proctest.Start(t, func() proctest.Spec {
		admin := freeport.Addr(t)
		return proctest.Spec{
			Name: "saver", Bin: bin, Dir: dir,
			Args: []string{"-cluster", cluster, "-etcd", "127.0.0.1:2379", "-instance", "saver-" + dbName,
				"-admin", admin, "-grpc", freeport.Addr(t), "-mysql", dsn,
				"-redis", redisAddr},
			Ready: func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/healthz", nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("healthz: %s", resp.Status)
				}
				return nil
			},
		}
	}), dsn
}

package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pushgw/pushgw/pkg/discovery"
)

// TestBenchIdleSmoke runs the whole bench path on a tiny idle scenario
// against the real servers: a private cluster comes up, generator
// children connect, the JSON and plot are written, and afterwards no
// process, database or etcd key of the run is left.
func TestBenchIdleSmoke(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./services/...", "./loadtest/cmd/pushload")
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out := t.TempDir()
	etcd := envOr("PUSHGW_ETCD", "127.0.0.1:2379")
	mysqlRoot := envOr("PUSHGW_BENCH_MYSQL", "root@tcp(127.0.0.1:3306)/")
	sum, err := runBench([]string{"-scenario", "idle", "-conns", "40", "-c", "8", "-settle", "0s", "-hold", "0s",
		"-no-progress", "-profiles=false", "-bin", bin, "-logs", t.TempDir(), "-generator", filepath.Join(bin, "pushload"), "-out", out,
		"-etcd", etcd, "-mysql", mysqlRoot, "-limit", "3m"})
	if err != nil {
		t.Fatal(err)
	}
	var std *Result
	plots := 0
	for _, f := range sum.Files {
		if strings.HasSuffix(f, ".png") {
			plots++
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if r.Engine == engineStd {
			std = &r
		}
	}
	if plots != 1 {
		t.Errorf("%d plots written, want 1", plots)
	}
	if std == nil {
		t.Fatalf("no std result in %v", sum.Files)
	}
	if std.Conns != 40 || std.Errors != 0 || std.AcceptAuthPerS <= 0 || std.LatencyMS.Count != 40 || std.RSSBytesPerConn == 0 {
		t.Fatalf("std result %+v", std)
	}
	if std.Loadavg.Before == "" || std.Git == "" || len(std.Series) < 2 {
		t.Fatalf("std result lacks loadavg, commit or series: %+v", std)
	}

	// Nothing of the run is left behind.
	db, err := sql.Open("mysql", mysqlRoot)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var name string
	err = db.QueryRow("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", sum.Database).Scan(&name)
	if err != sql.ErrNoRows {
		t.Errorf("database %s still exists (%v)", sum.Database, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := discovery.Connect(ctx, []string{etcd}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "/pushgw/"+sum.Cluster+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Errorf("etcd prefix of %s: %d keys left (%v)", sum.Cluster, resp.Count, err)
	}
	if out, _ := exec.Command("pgrep", "-f", "-cluster "+sum.Cluster).Output(); len(out) > 0 {
		t.Errorf("processes of %s still running: %s", sum.Cluster, out)
	}
}

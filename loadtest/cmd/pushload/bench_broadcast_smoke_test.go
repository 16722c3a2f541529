package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBenchBroadcastSmoke runs the broadcast scenario at a tiny size
// against the real servers: 40 connections over a generator child get the
// single broadcast and every broadcast of a short stream exactly once, and
// the figures of both phases are filled.
func TestBenchBroadcastSmoke(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./services/...", "./loadtest/cmd/pushload")
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sum, err := runBench([]string{"-scenario", "broadcast", "-engines", "std", "-conns", "40", "-c", "8", "-settle", "0s",
		"-bcast-rate", "5", "-bcast-duration", "2s", "-no-progress", "-profiles=false", "-bin", bin, "-logs", t.TempDir(),
		"-generator", filepath.Join(bin, "pushload"), "-out", t.TempDir(),
		"-etcd", envOr("PUSHGW_ETCD", "127.0.0.1:2379"), "-mysql", envOr("PUSHGW_BENCH_MYSQL", "root@tcp(127.0.0.1:3306)/"), "-limit", "3m"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Files) != 1 {
		t.Fatalf("files %v", sum.Files)
	}
	raw, err := os.ReadFile(sum.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	bf := r.Broadcast
	if r.Conns != 40 || r.Errors != 0 || r.Missing != 0 || bf == nil || bf.Reached != 40 || r.LatencyMS.Count != 40 || r.LatencyMS.P50 <= 0 {
		t.Fatalf("single broadcast: %s", raw)
	}
	st := bf.Stream
	if st == nil || st.Accepted < 1 || st.Deliveries != st.Accepted*40 || st.DeliveriesPerS <= 0 || st.DeliveriesPerRoomCPUS <= 0 {
		t.Fatalf("stream: %s", raw)
	}
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchUnicastSmoke runs the unicast ladder at a tiny size against
// the real servers, through both transports: every push of both steps is
// delivered and acked, each result carries its transport, the four hops,
// the services' histograms and the CPU of each process, and both plots
// are written. The p99 limit is wide: a loaded box must not stop the
// ladder after one step.
func TestBenchUnicastSmoke(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./services/...", "./loadtest/cmd/pushload")
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sum, err := runBench([]string{"-scenario", "unicast", "-engines", "std", "-users", "20", "-c", "8",
		"-rate-start", "20", "-rate-max", "40", "-step", "2s", "-drain", "30s", "-p99-limit", "30s", "-grpc-streams", "2",
		"-no-progress", "-profiles=false", "-bin", bin, "-logs", t.TempDir(), "-out", t.TempDir(),
		"-etcd", envOr("PUSHGW_ETCD", "127.0.0.1:2379"), "-mysql", envOr("PUSHGW_BENCH_MYSQL", "root@tcp(127.0.0.1:3306)/"), "-limit", "4m"})
	if err != nil {
		t.Fatal(err)
	}
	plots := 0
	transports := map[string]bool{}
	for _, f := range sum.Files {
		if strings.HasSuffix(f, ".png") {
			plots++
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r Result
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		transports[r.Transport] = true
		if !strings.Contains(filepath.Base(f), "-"+r.Transport+"-") {
			t.Errorf("file %s does not name transport %q", f, r.Transport)
		}
		if len(r.Steps) != 2 || r.Missing != 0 || r.Errors != 0 || r.SustainableRate != 40 || r.DeliveriesPerS <= 0 {
			t.Fatalf("%s result: %s", r.Transport, raw)
		}
		for _, st := range r.Steps {
			if st.Delivered != st.Accepted || st.Accepted == 0 || st.SaverAcked < st.Delivered {
				t.Errorf("%s step %v/s: accepted %d, delivered %d, saver acked %d", r.Transport, st.Offered, st.Accepted, st.Delivered, st.SaverAcked)
			}
			for _, hop := range []string{"accepted", "stored", "delivered", "acked"} {
				if h := st.HopsMS[hop]; h.Count != st.Delivered || h.P50 <= 0 {
					t.Errorf("%s step %v/s: hop %s = %+v, want %d values", r.Transport, st.Offered, hop, h, st.Delivered)
				}
			}
			if st.HopsMS["stored"].P50 > st.HopsMS["delivered"].P50*1.5+5 {
				t.Errorf("%s: stored p50 %v after delivered p50 %v", r.Transport, st.HopsMS["stored"].P50, st.HopsMS["delivered"].P50)
			}
			for _, p := range []string{"room", "center", "saver", "pushload"} {
				if _, ok := st.CPUSeconds[p]; !ok {
					t.Errorf("%s step: no CPU of %s in %v", r.Transport, p, st.CPUSeconds)
				}
			}
			for _, h := range []string{"saver_commit_ms", "saver_store_rpc_ms", "center_store_batch_msgs"} {
				if st.ServiceHistograms[h].Count <= 0 {
					t.Errorf("%s step: service histogram %s missing: %v", r.Transport, h, st.ServiceHistograms)
				}
			}
		}
	}
	if !transports[transportHTTP] || !transports[transportGRPC] || len(transports) != 2 {
		t.Errorf("transports %v, want http and grpc", transports)
	}
	if plots != 2 {
		t.Errorf("%d plots, want 2 (latency percentiles, p99 per transport): %v", plots, sum.Files)
	}
}

package main

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchCenterEnv makes the test binary serve as BenchmarkSender's center
// instead of running tests (TestMain).
const benchCenterEnv = "PUSHLOAD_BENCH_CENTER"

// TestMain runs the tests, or, with benchCenterEnv set, serves as the
// HTTP server BenchmarkSender starts in another process (answering like
// center, {"id":"123"}), so the benchmark's CPU and allocation figures
// are the sender's alone. The server prints its URL and serves until
// stdin closes.
func TestMain(m *testing.M) {
	if os.Getenv(benchCenterEnv) == "" {
		os.Exit(m.Run())
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"123"}`)
	}))
	os.Stdout.WriteString(srv.URL + "\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Close()
}

// startBenchCenter starts the helper process and returns its URL.
func startBenchCenter(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), benchCenterEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("bench center: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return strings.TrimSpace(line)
}

// cpuTime is this process's user+system CPU so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSender is the generator's cost per push, std against lean, on
// one worker (sequential round trips) and on 16 (in parallel, as a step's
// workers run). cpu-ns/op is the sender process's CPU per push (the
// server is another process); ns/op is wall time per push.
//
//	go test -run '^$' -bench BenchmarkSender -benchmem ./loadtest/cmd/pushload
func BenchmarkSender(b *testing.B) {
	url := startBenchCenter(b)
	for _, client := range []string{httpClientStd, httpClientLean} {
		for _, workers := range []int{1, 16} {
			b.Run(client+"/workers="+strconv.Itoa(workers), func(b *testing.B) {
				f := testPushFlags()
				f.users, f.httpClient, f.httpConc = 2000, client, workers
				s := &sender{f: f, center: url, tr: &tracker{runID: "0123456789abcdef"}, status: &counts{},
					http: &http.Client{Timeout: httpTimeout, Transport: &http.Transport{
						MaxIdleConns: workers, MaxIdleConnsPerHost: workers, IdleConnTimeout: time.Minute}}}
				defer s.http.CloseIdleConnections()
				jobs := make(chan int64, workers)
				// Warm up outside the timed part (the lean workers' connections
				// are dialled again below, once per worker).
				go func() {
					for k := 0; k < 4*workers; k++ {
						jobs <- int64(k)
					}
					close(jobs)
				}()
				runWorkers(s, workers, jobs)
				jobs = make(chan int64, workers)
				go func() {
					for k := 0; k < b.N; k++ {
						jobs <- int64(k)
					}
					close(jobs)
				}()
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime(b)
				runWorkers(s, workers, jobs)
				b.StopTimer()
				b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
				if out := s.status.Snapshot(); out["200"] != b.N+4*workers {
					b.Fatalf("outcomes %v, samples %q", out, s.errorSamples())
				}
			})
		}
	}
}

// runWorkers is sender.run's worker pool without the pacer.
func runWorkers(s *sender, workers int, jobs chan int64) {
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			s.work(jobs)
		}()
	}
	for w := 0; w < workers; w++ {
		<-done
	}
}

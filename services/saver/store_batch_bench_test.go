package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Shape of center's store batcher (services/center/storebatch.go): up to
// storeBatchFlights Store calls in flight, each with Independent set, over
// a few thousand users, 64-byte payloads as in the unicast load test.
const (
	benchStoreCallers = 4
	benchStoreUsers   = 2000
	benchStorePayload = 64
	// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times.
	clockTicks = 100
)

// BenchmarkStoreBatch stores batches of N messages through the real Store
// path (gRPC, group commit, MySQL commit, Redis inbox) and reports, per
// message, the CPU of this process (saver plus its gRPC client), of the
// MariaDB server (the whole shared server: other users' load counts too)
// and of the private redis-server. b.N counts messages, not calls, so one
// -benchtime compares the batch sizes:
//
//	go test ./services/saver -run '^$' -bench StoreBatch -benchtime 20000x
func BenchmarkStoreBatch(b *testing.B) {
	for _, n := range []int{1, 20, 200} {
		for _, fresh := range []bool{false, true} {
			b.Run(fmt.Sprintf("msgs_per_call=%d/fresh=%v", n, fresh), func(b *testing.B) { benchStoreBatch(b, n, fresh) })
		}
	}
}

// fresh=true is center's batcher (StoreRequest.fresh: no outcome check);
// false is a Store that may be a retry.
func benchStoreBatch(b *testing.B, perCall int, fresh bool) {
	f := newFixture(b, 10)
	payload := make([]byte, benchStorePayload)
	mk := func() *internalpb.Message {
		id := newID()
		return &internalpb.Message{Id: id, App: "bench", User: "u" + strconv.FormatUint(id%benchStoreUsers, 10), Qos: 1,
			Payload: payload, ExpiresMs: time.Now().Add(10 * time.Minute).UnixMilli()}
	}
	store := func(n int) error {
		msgs := make([]*internalpb.Message, n)
		for i := range msgs {
			msgs[i] = mk()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep, err := f.cli.Store(ctx, &internalpb.StoreRequest{Messages: msgs, Independent: true, Fresh: fresh})
		if err == nil && len(rep.GetFailed()) > 0 {
			err = fmt.Errorf("%d messages failed", len(rep.GetFailed()))
		}
		return err
	}
	// Warm the connections, the pools and the table.
	for range benchStoreCallers {
		if err := store(perCall); err != nil {
			b.Fatal(err)
		}
	}
	mysqlPid := findProcess("mariadbd", "mysqld")
	cpu0, db0, rds0 := selfCPU(b), procCPU(mysqlPid), redisCPU(f)
	b.ResetTimer()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	for range benchStoreCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int64(perCall)
				if rest := left.Add(-n); rest < 0 {
					n += rest
					if n <= 0 {
						return
					}
				}
				if err := store(int(n)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(per(selfCPU(b)-cpu0), "saver-µs/msg")
	// A failed read of /proc is 0: then there is no figure, not a wrong one.
	if db1 := procCPU(mysqlPid); db0 > 0 && db1 > 0 {
		b.ReportMetric(per(db1-db0), "mysql-µs/msg")
	}
	b.ReportMetric(per(redisCPU(f)-rds0), "redis-µs/msg")
	reportCommits(b, f)
}

// reportCommits adds saver's own commit histogram: rows and ms per commit.
func reportCommits(b *testing.B, f *fixture) {
	if rows, n := histogram(f.srv.metrics.batchRows); n > 0 {
		b.ReportMetric(rows/float64(n), "rows/commit")
	}
	if secs, n := histogram(f.srv.metrics.commitSeconds); n > 0 {
		b.ReportMetric(1000*secs/float64(n), "ms/commit")
	}
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// findProcess returns the pid of the first process named one of names,
// or 0.
func findProcess(names ...string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(d + "/comm")
		if err != nil {
			continue
		}
		for _, n := range names {
			if strings.TrimSpace(string(comm)) == n {
				pid, _ := strconv.Atoi(filepath.Base(d))
				return pid
			}
		}
	}
	return 0
}

// procCPU is utime+stime of pid from /proc/<pid>/stat, 0 if unreadable.
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// redisCPU is the private redis-server's used_cpu_user + used_cpu_sys.
func redisCPU(f *fixture) time.Duration {
	info, err := f.rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			x, _ := strconv.ParseFloat(v, 64)
			total += x
		}
	}
	return time.Duration(total * float64(time.Second))
}

// histogram returns the sum and count of h's samples.
func histogram(h prometheus.Histogram) (float64, uint64) {
	var d dto.Metric
	if err := h.Write(&d); err != nil {
		return 0, 0
	}
	return d.GetHistogram().GetSampleSum(), d.GetHistogram().GetSampleCount()
}

package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// BenchmarkMessageLifecycle measures MariaDB's CPU per QoS 1 message over
// its whole life in the hot table: stored through Store in calls of 64 (as
// center's batches), delivered and acked through Report eight calls later
// (as a room's flush window), and purged — InnoDB removes a deleted row's
// index entries later, in its purge threads, so the figure is read only
// after the history list has drained, or the cost of each secondary index
// would be left out. offline= rows of users who never connect sit in the
// table throughout, as in a production inbox table.
// go test ./services/saver -run '^$' -bench MessageLifecycle -benchtime 50000x
func BenchmarkMessageLifecycle(b *testing.B) {
	for _, offline := range []int{0, 100_000} {
		b.Run(fmt.Sprint("offline=", offline), func(b *testing.B) { benchLifecycle(b, offline) })
	}
}

const (
	lifecycleBatch = 64
	lifecycleLag   = 8
	// purgeWait bounds the wait for InnoDB's purge after the run.
	purgeWait = 2 * time.Minute
)

func benchLifecycle(b *testing.B, offline int) {
	f := newFixture(b, 10)
	for i := 0; i < offline; i += 500 {
		batch := make([]*internalpb.Message, 0, 500)
		for j := i; j < min(i+500, offline); j++ {
			batch = append(batch, msg("app1", fmt.Sprint("offline-", j%5000), "", time.Now().Add(time.Hour).UnixMilli()))
		}
		f.store(b, batch...)
	}
	mysqlPid := findProcess("mariadbd", "mysqld")
	waitPurge(b, f)
	db0 := procCPU(mysqlPid)
	b.ResetTimer()
	var window [][]*internalpb.Message
	ackBatch := func(ms []*internalpb.Message) {
		req := &internalpb.ReportRequest{}
		for _, m := range ms {
			req.Delivered = append(req.Delivered, refOf(m))
			req.Acked = append(req.Acked, refOf(m))
		}
		if _, err := f.cli.Report(callCtx(b), req); err != nil {
			b.Fatal(err)
		}
	}
	for done := 0; done < b.N; done += lifecycleBatch {
		batch := make([]*internalpb.Message, 0, lifecycleBatch)
		for i := done; i < min(done+lifecycleBatch, b.N); i++ {
			batch = append(batch, msg("app1", fmt.Sprint("u", i%2000), "", time.Now().Add(time.Hour).UnixMilli()))
		}
		f.store(b, batch...)
		window = append(window, batch)
		if len(window) > lifecycleLag {
			ackBatch(window[0])
			window = window[1:]
		}
	}
	for _, w := range window {
		ackBatch(w)
	}
	waitPurge(b, f)
	b.StopTimer()
	// A failed read of /proc is 0: then there is no figure, not a wrong
	// one. The figure is server-wide: other clients add to it.
	if db1 := procCPU(mysqlPid); db0 > 0 && db1 > 0 {
		b.ReportMetric(float64((db1-db0).Microseconds())/float64(b.N), "mysql-µs/msg")
	}
}

var historyLen = regexp.MustCompile(`History list length (\d+)`)

// waitPurge waits until InnoDB's purge has caught up (the history list is
// short), so a CPU reading includes the purge of what was deleted.
func waitPurge(b *testing.B, f *fixture) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), purgeWait)
	defer cancel()
	for {
		var typ, name, status string
		if err := f.sqldb.QueryRowContext(ctx, "SHOW ENGINE INNODB STATUS").Scan(&typ, &name, &status); err != nil {
			b.Fatal(err)
		}
		m := historyLen.FindStringSubmatch(status)
		if m == nil {
			b.Fatal("no history list length in SHOW ENGINE INNODB STATUS")
		}
		if n, _ := strconv.Atoi(m[1]); n < 100 {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("purge did not catch up in %s (history list %s)", purgeWait, m[1])
		case <-time.After(50 * time.Millisecond):
		}
	}
}

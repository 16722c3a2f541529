package main

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// BenchmarkTxPrepareCommit measures saver's side of a transactional push:
// PrepareTx then DecideTx(COMMIT) of a one-user record, from many
// concurrent callers, against the real MariaDB. Compare with BenchmarkStore
// in the same invocation (a plain push's group-committed Store):
//
//	go test ./services/saver -run '^$' -bench 'Store|TxPrepareCommit' -benchtime 5000x -cpu 2
func BenchmarkTxPrepareCommit(b *testing.B) {
	f := newFixture(b, 10)
	s := newTxServer(f.srv, newTxMetrics(prometheus.NewRegistry()))
	payload := make([]byte, 256)
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			now := time.Now()
			r := &internalpb.TxRecord{Id: newID(), App: "bench", TargetKind: internalpb.TxTargetKind_TX_TARGET_KIND_USER,
				Recipients: []*internalpb.TxRecipient{{User: "u", MessageId: newID()}}, Payload: payload, Qos: 1,
				TtlMs: time.Hour.Milliseconds(), CreatedMs: now.UnixMilli(), NextCheckMs: now.Add(time.Hour).UnixMilli()}
			if _, err := s.PrepareTx(context.Background(), &internalpb.PrepareTxRequest{Tx: r}); err != nil {
				b.Error(err)
				return
			}
			rep, err := s.DecideTx(context.Background(), &internalpb.DecideTxRequest{App: "bench", Id: r.GetId(),
				To: internalpb.TxState_TX_STATE_COMMITTED, By: internalpb.TxDecider_TX_DECIDER_API})
			if err != nil || !rep.GetApplied() {
				b.Errorf("commit: %v %v", rep, err)
				return
			}
			mine = append(mine, time.Since(now))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

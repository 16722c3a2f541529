package main

import (
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// BenchmarkStore measures group commit: many concurrent single-message
// Store calls (the shape center produces) over the real gRPC socket, so
// each MySQL transaction carries many callers' rows.
//
//	go test ./services/saver -run '^$' -bench Store -benchtime 20000x -cpu 2
func BenchmarkStore(b *testing.B) {
	f := newFixture(b, 10)
	payload := make([]byte, 256)
	b.SetParallelism(128) // concurrent callers per GOMAXPROCS
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := &internalpb.Message{Id: newID(), App: "bench", User: "u" + string(rune('a'+newID()%26)), Qos: 1, Payload: payload}
			if _, err := f.cli.Store(context.Background(), &internalpb.StoreRequest{Messages: []*internalpb.Message{m}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	var d dto.Metric
	if err := f.srv.metrics.batchRows.Write(&d); err == nil && d.GetHistogram().GetSampleCount() > 0 {
		h := d.GetHistogram()
		b.ReportMetric(h.GetSampleSum()/float64(h.GetSampleCount()), "rows/commit")
	}
	if err := f.srv.metrics.commitSeconds.Write(&d); err == nil && d.GetHistogram().GetSampleCount() > 0 {
		h := d.GetHistogram()
		b.ReportMetric(1000*h.GetSampleSum()/float64(h.GetSampleCount()), "ms/commit")
	}
}

package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/clientpb"
)

// A histogram's growth between two scrapes: only the series matching the
// label filter count, quantiles interpolate inside the buckets.
func TestHistDelta(t *testing.T) {
	before := parseMetrics(strings.NewReader(`
x_seconds_bucket{method="/S/Report",le="0.001"} 5
x_seconds_bucket{method="/S/Report",le="0.002"} 5
x_seconds_bucket{method="/S/Report",le="0.004"} 5
x_seconds_bucket{method="/S/Report",le="+Inf"} 5
x_seconds_sum{method="/S/Report"} 0.004
x_seconds_count{method="/S/Report"} 5
x_seconds_bucket{method="/S/Store",le="0.001"} 0
x_seconds_bucket{method="/S/Store",le="0.002"} 0
x_seconds_bucket{method="/S/Store",le="0.004"} 7
x_seconds_bucket{method="/S/Store",le="+Inf"} 7
x_seconds_sum{method="/S/Store"} 0.02
x_seconds_count{method="/S/Store"} 7
x_seconds_other 3
`))
	after := parseMetrics(strings.NewReader(`
x_seconds_bucket{method="/S/Report",le="0.001"} 55
x_seconds_bucket{method="/S/Report",le="0.002"} 103
x_seconds_bucket{method="/S/Report",le="0.004"} 104
x_seconds_bucket{method="/S/Report",le="+Inf"} 105
x_seconds_sum{method="/S/Report"} 0.154
x_seconds_count{method="/S/Report"} 105
x_seconds_bucket{method="/S/Store",le="0.001"} 0
x_seconds_bucket{method="/S/Store",le="0.002"} 0
x_seconds_bucket{method="/S/Store",le="0.004"} 9
x_seconds_bucket{method="/S/Store",le="+Inf"} 9
x_seconds_sum{method="/S/Store"} 0.026
x_seconds_count{method="/S/Store"} 9
`))
	fig, ok := histDelta(before, after, "x_seconds", `/Report"`, 1000)
	if !ok {
		t.Fatal("no growth found")
	}
	// 100 new calls: 50 in (0, 1 ms], 48 in (1, 2], 1 in (2, 4], 1 above.
	if fig.Count != 100 || math.Abs(fig.Mean-1.5) > 1e-9 {
		t.Errorf("count %v mean %v ms, want 100 and 1.5", fig.Count, fig.Mean)
	}
	if math.Abs(fig.P50-1) > 1e-9 {
		t.Errorf("p50 %v ms, want 1 (the 50th of 100 closes the first bucket)", fig.P50)
	}
	if math.Abs(fig.P99-4) > 1e-9 {
		t.Errorf("p99 %v ms, want 4 (the 99th is the last below +Inf)", fig.P99)
	}
	if fig.Slow != 0 {
		t.Errorf("slow %v, want 0: no bucket bound reaches 250 ms", fig.Slow)
	}
	all, _ := histDelta(before, after, "x_seconds", "", 1000)
	if all.Count != 102 {
		t.Errorf("without a filter count %v, want 102 (both methods)", all.Count)
	}
	if _, ok := histDelta(after, after, "x_seconds", "", 1); ok {
		t.Error("no growth reported as a figure")
	}
	if _, ok := histDelta(before, after, "x_sec", "", 1); ok {
		t.Error("a name prefix matched another metric")
	}
}

// Slow counts what lies above the first bound at or past 250 ms, the
// services' slow-store threshold.
func TestHistDeltaSlow(t *testing.T) {
	before := parseMetrics(strings.NewReader(`
c_seconds_bucket{le="0.128"} 10
c_seconds_bucket{le="0.256"} 10
c_seconds_bucket{le="0.512"} 10
c_seconds_bucket{le="+Inf"} 10
c_seconds_sum 0.1
c_seconds_count 10
`))
	after := parseMetrics(strings.NewReader(`
c_seconds_bucket{le="0.128"} 100
c_seconds_bucket{le="0.256"} 104
c_seconds_bucket{le="0.512"} 106
c_seconds_bucket{le="+Inf"} 107
c_seconds_sum 2.1
c_seconds_count 107
`))
	fig, ok := histDelta(before, after, "c_seconds", "", 1000)
	if !ok || fig.Slow != 3 {
		t.Errorf("slow %v (%v), want 3: two in (256, 512] ms and one above", fig.Slow, ok)
	}
	if rows, _ := histDelta(before, after, "c_seconds", "", 1); rows.Slow != 0 {
		t.Errorf("slow %v on a histogram that is not of seconds, want 0", rows.Slow)
	}
}

func TestBucketQuantileInterpolates(t *testing.T) {
	b := map[float64]float64{1: 0, 2: 10, 4: 20, math.Inf(1): 20}
	if got := bucketQuantile(b, 0.25); math.Abs(got-1.5) > 1e-9 {
		t.Errorf("q25 = %v, want 1.5", got)
	}
	if got := bucketQuantile(b, 0.75); math.Abs(got-3) > 1e-9 {
		t.Errorf("q75 = %v, want 3", got)
	}
	if got := bucketQuantile(map[float64]float64{}, 0.5); got != 0 {
		t.Errorf("empty = %v", got)
	}
}

// The tracker's hops: accepted from created_ms (mid-millisecond), acked
// from the ACK write; foreign payloads are ignored.
func TestTrackerHops(t *testing.T) {
	tr := &tracker{runID: "run1", seen: map[uint64]struct{}{}}
	sent := time.Now().Add(-20 * time.Millisecond).Truncate(time.Millisecond)
	p := &clientpb.Push{Id: 1, Qos: 1, Payload: []byte(timedPayload("run1", sent, 64)),
		CreatedMs: sent.Add(3 * time.Millisecond).UnixMilli()}
	tr.onPush(p)
	tr.onAcked(p, sent.Add(30*time.Millisecond))
	tr.onAcked(&clientpb.Push{Id: 2, Payload: []byte("other|1|")}, time.Now())
	acc, ack := tr.accepted.Summary(), tr.acked.Summary()
	if acc.Count != 1 || math.Abs(acc.P50-3.5) > 0.01 {
		t.Errorf("accepted %+v, want one at 3.5 ms", acc)
	}
	if ack.Count != 1 || math.Abs(ack.P50-30) > 0.05 {
		t.Errorf("acked %+v, want one at 30 ms", ack)
	}
	if len(timedPayload("run1", sent, 64)) != 64 {
		t.Error("payload not padded to its size")
	}
}

func TestTransportsFlag(t *testing.T) {
	f, err := parseBenchFlags([]string{"-scenario", "unicast"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := parseTransports(f.transports); len(got) != 2 || got[0] != transportHTTP || got[1] != transportGRPC {
		t.Errorf("default transports %v, want http,grpc", got)
	}
	for _, bad := range [][]string{
		{"-scenario", "unicast", "-transports", "http,smtp"}, {"-scenario", "unicast", "-transports", ","},
		{"-scenario", "unicast", "-grpc-streams", "0"}, {"-scenario", "unicast", "-grpc-streams", "257"},
	} {
		if _, err := parseBenchFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

package main

import (
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The unicast scenario splits each push's life into hops, all measured
// from the request start the generator writes into the payload:
//
//	accepted   center built the message (its created_ms, a millisecond
//	           clock: the middle of that millisecond is taken, so ±0.5 ms)
//	stored     the API answer reached the sender (QoS 1 answers only after
//	           saver's commit, so this is "durable")
//	delivered  the client read the PUSH frame (the end-to-end latency)
//	acked      the client wrote its ACK
//
// What follows the ACK happens inside the services, which keep no
// per-message timestamps: the room batches ACKs into Saver.Report calls,
// whose duration saver's own histogram gives (service_histograms), and
// saver's acked outcome counter says how many of the step's messages it
// recorded as acked (saver_acked).

// acceptedAfter estimates how long after sent center accepted a push
// whose created_ms is createdMS (truncated milliseconds of center's
// clock, the same clock as the generator's on one box).
func acceptedAfter(createdMS int64, sent time.Time) time.Duration {
	return time.UnixMilli(createdMS).Add(500 * time.Microsecond).Sub(sent)
}

// HistFig summarises one service histogram over a step, from the
// difference of two scrapes. Quantiles are interpolated inside Prometheus
// buckets (as histogram_quantile does), so they are as coarse as the
// buckets: a factor of two for the services' latency histograms.
type HistFig struct {
	Count float64 `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	// Slow counts, for histograms of seconds, the observations above the
	// first bucket bound at or past slowBound: a handful of stalled
	// commits sets a step's p99 without moving the histogram's own.
	Slow float64 `json:"slow,omitempty"`
}

// slowBound is the services' slow-store log threshold (center
// slowStore, saver slowCommit).
const slowBound = 0.25

// svcHist names one histogram of one service: proc is "center" or
// "saver", match a substring of the series' labels ("" for all series),
// scale turns its unit into the key's (1000 for seconds into ms).
type svcHist struct {
	key, proc, metric, match string
	scale                    float64
}

// unicastHists are the service histograms each unicast step reports.
func unicastHists() []svcHist {
	return []svcHist{
		{"center_push_http_ms", "center", "pushgw_center_push_duration_seconds", `route="push",qos="1"`, 1000},
		{"center_store_batch_msgs", "center", "pushgw_center_store_batch_messages", "", 1},
		{"saver_store_rpc_ms", "saver", "pushgw_saver_rpc_duration_seconds", `/Store"`, 1000},
		{"saver_commit_ms", "saver", "pushgw_saver_commit_duration_seconds", "", 1000},
		{"saver_commit_batch_rows", "saver", "pushgw_saver_commit_batch_rows", "", 1},
		{"saver_report_rpc_ms", "saver", "pushgw_saver_rpc_duration_seconds", `/Report"`, 1000},
	}
}

// histDelta summarises the growth of histogram metric between two scrapes
// (parseMetrics maps), over every series whose labels contain match.
func histDelta(before, after map[string]float64, metric, match string, scale float64) (HistFig, bool) {
	sumOf := func(m map[string]float64, suffix string) float64 {
		var v float64
		for k, x := range m {
			if seriesOf(k, metric+suffix, match) {
				v += x
			}
		}
		return v
	}
	count := sumOf(after, "_count") - sumOf(before, "_count")
	if count <= 0 {
		return HistFig{}, false
	}
	fig := HistFig{Count: count, Mean: (sumOf(after, "_sum") - sumOf(before, "_sum")) / count * scale}
	buckets := map[float64]float64{}
	for _, side := range []struct {
		m    map[string]float64
		sign float64
	}{{after, 1}, {before, -1}} {
		for k, v := range side.m {
			if !seriesOf(k, metric+"_bucket", match) {
				continue
			}
			if le, ok := leOf(k); ok {
				buckets[le] += side.sign * v
			}
		}
	}
	fig.P50 = bucketQuantile(buckets, 0.5) * scale
	fig.P99 = bucketQuantile(buckets, 0.99) * scale
	if scale == 1000 {
		fig.Slow = countAbove(buckets, slowBound)
	}
	return fig, true
}

// countAbove counts the observations above the first finite bucket bound
// at or past bound (cumulative buckets, upper bound -> count); 0 when no
// bound reaches it.
func countAbove(buckets map[float64]float64, bound float64) float64 {
	le, total := math.Inf(1), 0.0
	for b, n := range buckets {
		if math.IsInf(b, 1) {
			total = n
		} else if b >= bound && b < le {
			le = b
		}
	}
	if math.IsInf(le, 1) {
		return 0
	}
	return max(total-buckets[le], 0)
}

// seriesOf says whether key (`name{labels}` or `name`) is a series of
// name whose labels contain match.
func seriesOf(key, name, match string) bool {
	rest, ok := strings.CutPrefix(key, name)
	if !ok || (rest != "" && rest[0] != '{') {
		return false
	}
	return match == "" || strings.Contains(rest, match)
}

// leOf reads a bucket's upper bound.
func leOf(key string) (float64, bool) {
	_, rest, ok := strings.Cut(key, `le="`)
	if !ok {
		return 0, false
	}
	v, _, _ := strings.Cut(rest, `"`)
	if v == "+Inf" {
		return math.Inf(1), true
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}

// bucketQuantile interpolates quantile q linearly inside the cumulative
// buckets (upper bound -> count); in the +Inf bucket it answers the
// highest finite bound.
func bucketQuantile(buckets map[float64]float64, q float64) float64 {
	les := make([]float64, 0, len(buckets))
	for le := range buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 {
		return 0
	}
	total := buckets[les[len(les)-1]]
	if total <= 0 {
		return 0
	}
	rank := q * total
	prevLE, prevCount := 0.0, 0.0
	for _, le := range les {
		c := buckets[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return prevLE
			}
			if c == prevCount {
				return le
			}
			return prevLE + (le-prevLE)*(rank-prevCount)/(c-prevCount)
		}
		prevLE, prevCount = le, c
	}
	return prevLE
}

// mariadbPID finds the MariaDB (or MySQL) server on this box by its
// command name, 0 when none runs; its CPU is reported beside the
// cluster's, though other users of the server share it.
func mariadbPID() int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(b)) {
		case "mariadbd", "mysqld":
			pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			if err == nil {
				return pid
			}
		}
	}
	return 0
}

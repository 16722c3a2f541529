package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type metrics struct {
	rpc             *prometheus.HistogramVec
	stored          prometheus.Counter
	storeRejected   prometheus.Counter
	storeQueue      prometheus.Gauge
	batchRows       prometheus.Histogram
	commitSeconds   prometheus.Histogram
	pendingFallback prometheus.Counter
	delivered       *prometheus.CounterVec
	outcomes        *prometheus.CounterVec
	redisErrors     *prometheus.CounterVec
	claimed         prometheus.Counter
	// PendingBatch (pending_batch.go).
	pendingBatch        *prometheus.CounterVec
	pendingBatchQueries prometheus.Counter
	inboxMarks          *prometheus.CounterVec
	// Report batches (report_batch.go).
	ackFailed  prometheus.Counter
	reportRefs *prometheus.HistogramVec
	// CatchUpBatch (catchup_batch.go).
	catchUpBatch *prometheus.CounterVec
	catchUpReads prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushgw_saver_rpc_duration_seconds",
			Help:    "Duration of saver gRPC calls by method and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"method", "code"}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_saver_stored_messages_total", Help: "Messages committed to MySQL by Store.",
		}),
		storeRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_saver_store_rejected_total", Help: "Store calls shed because the group-commit queue was full.",
		}),
		storeQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_saver_store_queue", Help: "Store requests waiting for a group-commit writer.",
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pushgw_saver_commit_batch_rows", Help: "Rows per group-commit transaction.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pushgw_saver_commit_duration_seconds", Help: "Duration of one group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		pendingFallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_saver_pending_mysql_fallback_total", Help: "Pending calls answered from MySQL because the Redis inbox was missing or stale.",
		}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_saver_deliveries_total", Help: "Deliveries counted, by source (pending, report).",
		}, []string{"source"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_saver_outcomes_total", Help: "Messages that left the store, by outcome (acked, expired, dead).",
		}, []string{"outcome"}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_saver_redelivery_claimed_total", Help: "Undelivered messages handed out again by ClaimUndelivered.",
		}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_saver_redis_errors_total", Help: "Redis failures absorbed by falling back to MySQL, by operation.",
		}, []string{"op"}),
	}
	reg.MustRegister(m.rpc, m.stored, m.storeRejected, m.storeQueue, m.batchRows, m.commitSeconds,
		m.pendingFallback, m.delivered, m.outcomes, m.redisErrors, m.claimed)
	m.pendingBatch = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_saver_pending_batch_users_total",
		Help: "Users asked through PendingBatch, by answer (redis_empty: marked empty inbox, no MySQL; mysql_empty: found empty by the batch's one MySQL read; single: served like Pending; deferred; failed).",
	}, []string{"answer"})
	m.pendingBatchQueries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_saver_pending_batch_mysql_reads_total", Help: "MySQL reads made by PendingBatch to check unmarked users for messages (one per app per call).",
	})
	m.inboxMarks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_saver_inbox_empty_marks_total", Help: "Inboxes PendingBatch marked complete and empty (done), or did not because a write or a flush came after its MySQL read (raced).",
	}, []string{"result"})
	reg.MustRegister(m.pendingBatch, m.pendingBatchQueries, m.inboxMarks)
	m.addReportMetrics(reg)
	m.addCatchUpMetrics(reg)
	return m
}

// interceptor times every call.
func (m *metrics) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.rpc.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

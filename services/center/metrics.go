package main

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests      *prometheus.CounterVec
	pushLatency   *prometheus.HistogramVec
	stored        prometheus.Counter
	delivered     prometheus.Counter
	inline        prometheus.Counter
	deliveryFails *prometheus.CounterVec
	deliveryBatch prometheus.Histogram
	// deliveryPending lets an operator (and the tests) see that async
	// delivery has caught up: queued plus in-flight batched deliveries.
	deliveryPending prometheus.Gauge
	roomBatch       prometheus.Histogram
	redelivered     prometheus.Counter
	// broadcastResends counts quick resends to rooms that could not be
	// reached (broadcast_resend.go), by result.
	broadcastResends *prometheus.CounterVec
	retries          prometheus.Counter
	retryDropped     *prometheus.CounterVec
	// retrySkipped and retryCheckFailed: the state check before each
	// retry round (retry_check.go).
	retrySkipped     *prometheus.CounterVec
	retryCheckFailed *prometheus.CounterVec
	// retryHeld counts messages with a collapse key kept back for the
	// next round because saver could not be asked.
	retryHeld     prometheus.Counter
	routeFallback *prometheus.CounterVec

	rateLimitSeconds prometheus.Histogram
	rateLimitErrors  *prometheus.CounterVec
	rateLimited      *prometheus.CounterVec
	// Of the unicast push checks' batcher (ratelimit_batch.go).
	rateLimitBatch    prometheus.Histogram
	rateLimitOverflow prometheus.Counter
	pacerErrors       prometheus.Counter
	fanouts           prometheus.Gauge
	storeBatch        *storeBatchMetrics
	// unicastLatency is pushLatency's "push" children (metrics_cache.go).
	unicastLatency *latencyByQoS
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_center_requests_total",
			Help: "API requests by route and result code (OK or an error code).",
		}, []string{"route", "code"}),
		pushLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushgw_center_push_duration_seconds",
			Help:    "Time to answer a push request, by route and QoS.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}, []string{"route", "qos"}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_center_messages_stored_total",
			Help: "QoS 1 messages made durable by saver before the API answered.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_center_messages_delivered_total",
			Help: "Message copies rooms accepted for a live connection.",
		}),
		inline: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_center_delivery_inline_total",
			Help: "Stored pushes delivered inside the request because the delivery queue was full.",
		}),
		deliveryFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_center_delivery_errors_total",
			Help: "Failed downstream calls while delivering, by stage (lookup, room, claim).",
		}, []string{"stage"}),
		routeFallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_center_route_cache_total",
			Help: "Users looked up in the route cache because Register could not answer: hit (delivered by its last answer) or miss (left to the retrier).",
		}, []string{"result"}),
		deliveryPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_center_delivery_pending_messages",
			Help: "Stored messages queued for batched delivery or in a delivery attempt still running.",
		}),
		deliveryBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushgw_center_delivery_batch_messages",
			Help:    "Stored messages per batched delivery (one Register lookup, one PushBatch per room).",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500},
		}),
		roomBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushgw_center_room_batch_pushes",
			Help:    "Pushes per Room.PushBatch call.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_center_redelivered_total",
			Help: "Stored messages no room reported delivered, claimed from saver and queued for delivery again.",
		}),
		broadcastResends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_center_broadcast_resends_total",
			Help: "Quick resends of a broadcast to a room whose call failed for want of a connection, by result (ok: the room confirmed; failed).",
		}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_center_delivery_retries_total",
			Help: "Stored messages whose live delivery failed for a passing reason, sent again shortly after.",
		}),
		retryDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_center_delivery_retries_dropped_total",
			Help: "Messages left to the redelivery sweep by the retrier, by reason (gave_up, queue_full).",
		}, []string{"reason"}),
		retrySkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_center_delivery_retries_skipped_total",
			Help: "Messages the retrier did not push again because they no longer wait for an ack, by reason (collapsed, acked, expired, dead, unknown).",
		}, []string{"reason"}),
		retryCheckFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_center_delivery_retry_checks_failed_total",
			Help: "Retry rounds whose state check saver did not answer: unavailable (messages with a collapse key wait for the next round, the others are pushed unchecked) or unimplemented (an older saver; pushed unchecked).",
		}, []string{"reason"}),
		retryHeld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_center_delivery_retries_held_total",
			Help: "Messages with a collapse key kept back to the next retry round because saver could not say whether a newer one replaced them.",
		}),
	}
	m.rateLimitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pushgw_center_ratelimit_check_seconds",
		Help:    "Time of one per-app rate limit call in Redis (a batch of unicast push checks takes one).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 12),
	})
	m.rateLimitErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_center_ratelimit_errors_total",
		Help: "Rate limit checks Redis did not answer, by API; those requests were admitted (fail-open).",
	}, []string{"api"})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_center_rate_limited_total",
		Help: "Requests answered 429 RATE_LIMITED, by API.",
	}, []string{"api"})
	m.pacerErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_center_pacer_errors_total",
		Help: "Pacer steps Redis did not answer; the sender paced itself alone.",
	})
	m.fanouts = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pushgw_center_multicast_fanouts",
		Help: "Multicast deliveries running on this center.",
	})
	m.rateLimitBatch, m.rateLimitOverflow = newRateBatchHistogram(), newRateBatchOverflow()
	reg.MustRegister(m.rateLimitSeconds, m.rateLimitErrors, m.rateLimited, m.rateLimitBatch, m.rateLimitOverflow, m.pacerErrors, m.fanouts)
	reg.MustRegister(m.requests, m.pushLatency, m.stored, m.delivered, m.inline, m.deliveryFails, m.deliveryPending, m.deliveryBatch, m.roomBatch, m.redelivered,
		m.broadcastResends, m.retries, m.retryDropped, m.retrySkipped, m.retryCheckFailed, m.retryHeld, m.routeFallback)
	for _, r := range []string{"ok", "failed"} {
		m.broadcastResends.WithLabelValues(r) // scraped as 0 before the first resend
	}
	m.storeBatch = newStoreBatchMetrics(reg)
	m.unicastLatency = newLatencyByQoS(m.pushLatency, "push")
	return m
}

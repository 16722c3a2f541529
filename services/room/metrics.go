package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// numOps sizes per-op counter tables (ops are 1..MaxOp).
const numOps = int(protocol.MaxOp) + 1

type metrics struct {
	conns        prometheus.Gauge
	auths        *prometheus.CounterVec
	framesIn     [numOps]prometheus.Counter
	framesOut    [numOps]prometheus.Counter
	pushes       prometheus.Counter
	slowConsumer prometheus.Counter
	hbTimeouts   prometheus.Counter
	authTimeouts prometheus.Counter
	rateLimited  prometheus.Counter
	closes       *prometheus.CounterVec
	batchDropped *prometheus.CounterVec
	batchFailed  *prometheus.CounterVec
	// deliveriesFolded counts delivery reports sent with their ACK
	// (report_hold.go).
	deliveriesFolded prometheus.Counter
	// deliveriesHeld is the number of messages whose delivery reports wait
	// for their ACK.
	deliveriesHeld prometheus.Gauge
	peerErrors     *prometheus.CounterVec
	poolRejected   *prometheus.CounterVec
	catchUps       *prometheus.CounterVec
	// authReplyWait is how long AUTH_REPLY waited for register's put.
	authReplyWait prometheus.Histogram
	inflightHeld  prometheus.Counter
	// admissionRefused counts connections refused at the door, by reason
	// (denied, rate, preauth); admissionBad counts rejected configs.
	admissionRefused *prometheus.CounterVec
	admissionBad     prometheus.Counter
	// pullBatches counts Saver.PendingBatch calls (pending_batch.go).
	pullBatches prometheus.Counter
	// catchUpBatches counts Saver.CatchUpBatch calls
	// (broadcast_catchup_batch.go).
	catchUpBatches prometheus.Counter
	// flash counts flash-reconnect parking (resume.go).
	flash *flashMetrics
	// epochChanges counts register epoch changes seen (epoch.go).
	epochChanges prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_room_connections", Help: "Open client connections (authenticated or not)."}),
		auths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_auths_total", Help: "AUTH attempts by result (ok or the error code name)."}, []string{"result"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_room_pushes_written_total", Help: "PUSH frames queued to clients."}),
		slowConsumer: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_room_slow_consumer_disconnects_total", Help: "Connections closed because their send queue was full."}),
		hbTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_room_heartbeat_timeouts_total", Help: "Authenticated connections closed for silence."}),
		authTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_room_auth_timeouts_total", Help: "Connections closed for not authenticating in time."}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_room_rate_limited_total", Help: "Connections closed for sending frames faster than -max-frame-rate allows."}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_error_closes_total", Help: "Connections closed with an ERROR or KICK, by code."}, []string{"code"}),
		batchDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_batch_dropped_total", Help: "Items shed because a batch queue was full."}, []string{"batch"}),
		batchFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_batch_failed_total", Help: "Batches given up after retries."}, []string{"batch"}),
		deliveriesHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushgw_room_deliveries_held", Help: "QoS 1 messages whose delivery report waits in the room for their ACK (-report-hold)."}),
		deliveriesFolded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgw_room_deliveries_folded_total", Help: "QoS 1 delivery reports held until their ACK and sent with it (saver then records both at once)."}),
		peerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_peer_errors_total", Help: "Failed calls to other services."}, []string{"method"}),
		poolRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgw_room_pool_rejected_total", Help: "Tasks refused by a full worker pool."}, []string{"pool"}),
	}
	m.catchUps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_room_broadcast_catchups_total", Help: "Login broadcast catch-ups finished, by result (ok, given_up)."}, []string{"result"})
	reg.MustRegister(m.catchUps)
	m.authReplyWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pushgw_room_auth_reply_wait_seconds",
		Help:    "Time from AUTH to AUTH_REPLY: the wait for register to hold the session, bounded by -auth-reply-wait.",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .3},
	})
	m.inflightHeld = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_room_inflight_held_total", Help: "Live QoS 1 pushes held back because the connection had max_inflight unacked."})
	m.admissionRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_room_admission_refused_total", Help: "Connections refused before their first frame, by reason (denied: IP lists; rate: per-IP connect rate; preauth: -max-preauth)."}, []string{"reason"})
	m.admissionBad = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_room_admission_config_rejected_total", Help: "Admission configs from etcd rejected as invalid (the previous rules stay)."})
	m.pullBatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_room_pending_batches_total", Help: "Saver.PendingBatch calls: the pending pulls of logins (and pages) of one flush window go in one."})
	reg.MustRegister(m.pullBatches)
	m.catchUpBatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_room_broadcast_catchup_batches_total", Help: "Saver.CatchUpBatch calls: the broadcast catch-up reads of logins of one flush window go in one."})
	reg.MustRegister(m.catchUpBatches)
	m.epochChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushgw_room_register_epoch_changes_total", Help: "Times register's session store lost its data (its epoch changed) and the room put its sessions back at once."})
	reg.MustRegister(m.epochChanges)
	m.flash = newFlashMetrics(reg)
	in := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_room_frames_in_total", Help: "Client frames received, by op."}, []string{"op"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushgw_room_frames_out_total", Help: "Frames queued to clients, by op."}, []string{"op"})
	for op := protocol.OpAuth; op <= protocol.MaxOp; op++ {
		m.framesIn[op] = in.WithLabelValues(op.String())
		m.framesOut[op] = out.WithLabelValues(op.String())
	}
	reg.MustRegister(m.conns, m.auths, in, out, m.pushes, m.slowConsumer, m.hbTimeouts, m.authTimeouts, m.rateLimited,
		m.closes, m.batchDropped, m.batchFailed, m.deliveriesFolded, m.deliveriesHeld, m.peerErrors, m.poolRejected, m.authReplyWait, m.inflightHeld, m.admissionRefused, m.admissionBad)
	return m
}

func (m *metrics) frameIn(op protocol.Op) {
	if op.Valid() {
		m.framesIn[op].Inc()
	}
}

func (m *metrics) frameOut(op protocol.Op) {
	if op.Valid() {
		m.framesOut[op].Inc()
	}
}

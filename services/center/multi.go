package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// A multicast (POST /v1/push/multi) of up to maxMultiUsers users is one
// unit. QoS 1: every message is committed by one Saver.StoreMulti call (one
// MySQL transaction, the payload sent once) before the answer, or none is
// and the answer says so; a retry with the same idempotency_key answers
// the first ids and stores nothing. Delivery then runs in the background
// on this center, in chunks of multiChunk users (one batched register
// lookup per chunk, one PushBatch per room), paced by the app's
// deliveries_per_second across the cluster (Pacer), with its progress in
// Redis for GET /v1/multicasts/{id}. What it does not reach stays stored:
// the user gets it on connect, and the redelivery sweep sends what no room
// took (after each message's turn in the pacing, see saver).
const (
	// maxMultiBodyBytes bounds a multicast body: 100,000 users of up to
	// 128 bytes as JSON strings, and a payload.
	maxMultiBodyBytes = 16 << 20
	// maxMultiBytes bounds users x payload bytes of one multicast (saver's
	// bound too, see services/saver/multi.go: each recipient's row holds
	// its copy of the payload). Beyond it: 413 PAYLOAD_TOO_LARGE.
	maxMultiBytes = 64 << 20
	// multiChunk is the users per delivery step (and per pacer step).
	multiChunk = registerLookupCh
	// maxFanouts bounds the multicast deliveries one center runs at once;
	// beyond it a request is refused with TOO_MANY_IN_FLIGHT before
	// anything is stored.
	maxFanouts = 64
	// maxFanoutUsers bounds the messages those deliveries hold in memory
	// (≈300 B each: about 300 MiB at most), so 64 multicasts of 100,000
	// users cannot take gigabytes; beyond it TOO_MANY_IN_FLIGHT too.
	maxFanoutUsers = 1_000_000
	// multiStoreTimeout is the budget of one StoreMulti: 100,000 rows in
	// one transaction take seconds on this box.
	multiStoreTimeout = 30 * time.Second
	// multiRequestTimeout is the multicast route's deadline; it takes
	// over from -request-timeout when that is shorter.
	multiRequestTimeout = multiStoreTimeout + 5*time.Second
	// maxGRPCMulti bounds a StoreMulti request or reply on the wire
	// (saver's server accepts 16 MiB).
	maxGRPCMulti = 16 << 20
	// progressTTL is how long GET /v1/multicasts/{id} can answer.
	progressTTL = 24 * time.Hour
	// progressTimeout bounds one Redis call for progress.
	progressTimeout = 500 * time.Millisecond
	// fanoutSlack is added to a paced fan-out's expected duration for
	// its deadline; what is left at the deadline goes to the sweep.
	fanoutSlack = 30 * time.Second
	// qos0PaceShare is the share of the request deadline a paced QoS 0
	// multicast (delivered inside the request) may take.
	qos0PaceShare = 0.5
)

type multicastResponse struct {
	IDs map[string]string `json:"ids"`
	QoS uint32            `json:"qos"`
	// MulticastID names the multicast for GET /v1/multicasts/{id}
	// (QoS 1 only); it is the id of its first message.
	MulticastID string `json:"multicast_id,omitempty"`
	Replayed    bool   `json:"replayed,omitempty"`
	// DeliveriesPerSecond is the pace delivery runs at (0: unpaced).
	DeliveriesPerSecond int  `json:"deliveries_per_second,omitempty"`
	Delivered           *int `json:"delivered,omitempty"`
}

type multicastProgress struct {
	MulticastID string `json:"multicast_id"`
	// State: "sending" while this center's delivery runs, then "done".
	State               string `json:"state"`
	Total               int64  `json:"total"`
	Sent                int64  `json:"sent"`
	Delivered           int64  `json:"delivered"`
	DeliveriesPerSecond int64  `json:"deliveries_per_second"`
	StartedMS           int64  `json:"started_ms"`
	FinishedMS          int64  `json:"finished_ms,omitempty"`
}

func (q *multiPushRequest) validateMulti(keyApp string) (delivery, *apiError) {
	d, e := q.validate(keyApp)
	if e != nil {
		return d, e
	}
	if total := len(d.payload) * len(q.Users); total > maxMultiBytes {
		return d, &apiError{Code: CodePayloadTooLarge, Field: "payload",
			Message: fmt.Sprintf("%d users x %d payload bytes = %d bytes; a multicast may carry at most %d (each user's copy is stored): shorten the payload or split the users", len(q.Users), len(d.payload), total, maxMultiBytes)}
	}
	if len(q.IdempotencyKey) > maxIdempotencyKeyBytes {
		return d, fieldError("idempotency_key", fmt.Sprintf("idempotency_key is %d bytes; at most %d allowed", len(q.IdempotencyKey), maxIdempotencyKeyBytes))
	}
	if q.IdempotencyKey != "" && d.qos == 0 {
		return d, fieldError("idempotency_key", "idempotency_key needs qos 1: a qos 0 push is not stored, so there is nothing to find on a retry")
	}
	d.opts, e = checkStoreOptions(q.CollapseKey, q.Priority, d.qos)
	return d, e
}

func (s *Server) handleMultiPush(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	start := time.Now()
	var req multiPushRequest
	if e := decodeBodyLimit(w, r, &req, maxMultiBodyBytes); e != nil {
		return nil, e
	}
	out, e := s.pushMulti(r.Context(), app, &req)
	if e != nil {
		return nil, e
	}
	s.m.pushLatency.WithLabelValues("push_multi", strconv.Itoa(int(out.QoS))).Observe(time.Since(start).Seconds())
	return out, nil
}

// pushMulti validates, rate-limits and sends a decoded multicast; HTTP
// and gRPC share it.
func (s *Server) pushMulti(ctx context.Context, app appconfig.App, req *multiPushRequest) (*multicastResponse, *apiError) {
	d, e := req.validateMulti(app.Name)
	if e != nil {
		return nil, e
	}
	// Before the limit, as validation: a refused receipt costs no token.
	if e := checkReceipt(app, req.Receipt, d); e != nil {
		return nil, e
	}
	if e := s.limits.allow(ctx, app.Name, apiMulti, app.Multi(), len(req.Users)); e != nil {
		return nil, e
	}
	if d.qos == 0 {
		return s.multicastQoS0(ctx, app, req.Users, d)
	}
	return s.multicast(ctx, app, req.Users, req.IdempotencyKey, req.Receipt, d)
}

// multicastQoS0 delivers inside the request, paced: a QoS 0 message is
// never stored, so nothing could finish it later. A multicast the pace
// cannot send within half the request deadline is refused up front.
func (s *Server) multicastQoS0(ctx context.Context, app appconfig.App, users []string, d delivery) (*multicastResponse, *apiError) {
	pace := app.DeliveriesPerSecond
	if pace > 0 {
		if dl, ok := ctx.Deadline(); ok {
			fit := int(time.Until(dl).Seconds() * qos0PaceShare * float64(pace))
			if len(users) > max(fit, pacerBurst(pace)) {
				return nil, &apiError{Code: CodeRateLimited, Field: "users", retryAfter: 1,
					Message: fmt.Sprintf("a qos 0 multicast is sent within the request; at the app's %d deliveries/s at most %d users fit; use qos 1 or fewer users", pace, max(fit, pacerBurst(pace)))}
			}
		}
	}
	msgs, e := s.newMessages(app.Name, users, "", d)
	if e != nil {
		return nil, e
	}
	out := &multicastResponse{IDs: idsOf(msgs), QoS: 0, DeliveriesPerSecond: pace}
	n := 0
	for start := 0; start < len(msgs); start += multiChunk {
		chunk := msgs[start:min(start+multiChunk, len(msgs))]
		if err := s.pacer.Wait(ctx, app.Name, pace, len(chunk)); err != nil {
			break // deadline: the rest is not sent, and delivered says so
		}
		if ctx.Err() != nil {
			break // the request deadline passed: delivered says how far it got
		}
		k, err := s.deliver(ctx, chunk)
		if err != nil {
			s.log.Warn("center: qos 0 multicast lookup failed", "err", err)
			if n == 0 {
				return nil, errorf(CodeUnavailable, "session lookup failed; the message was not sent, retry shortly")
			}
		}
		n += k
	}
	out.Delivered = &n
	return out, nil
}

// multicast stores a QoS 1 multicast as one unit and starts its delivery.
// receipt (checked by checkReceipt) marks every recipient's message: saver
// copies the template's flag to each row.
func (s *Server) multicast(ctx context.Context, app appconfig.App, users []string, ikey string, receipt bool, d delivery) (*multicastResponse, *apiError) {
	select {
	case s.fanoutSlots <- struct{}{}:
	default:
		return nil, &apiError{Code: CodeTooManyInFlight, retryAfter: 1,
			Message: fmt.Sprintf("this center is delivering %d multicasts already; nothing was stored, retry shortly", maxFanouts)}
	}
	if s.fanoutUsers.Add(int64(len(users))) > maxFanoutUsers {
		s.fanoutUsers.Add(-int64(len(users)))
		<-s.fanoutSlots
		return nil, &apiError{Code: CodeTooManyInFlight, retryAfter: 1,
			Message: fmt.Sprintf("this center is delivering multicasts to %d users already; nothing was stored, retry shortly", maxFanoutUsers)}
	}
	started := false
	defer func() {
		if !started {
			s.fanoutUsers.Add(-int64(len(users)))
			<-s.fanoutSlots
		}
	}()
	msgs, e := s.newMessages(app.Name, users, "", d)
	if e != nil {
		return nil, e
	}
	mcast := msgs[0].GetId()
	ids := make([]uint64, len(msgs))
	for i, m := range msgs {
		m.MulticastId, ids[i], m.Receipt = mcast, m.GetId(), receipt
	}
	pace := app.DeliveriesPerSecond
	t := msgs[0]
	req := &internalpb.StoreMultiRequest{
		Message: &internalpb.Message{Id: mcast, App: app.Name, Payload: t.GetPayload(), Qos: t.GetQos(), CreatedMs: t.GetCreatedMs(),
			ExpiresMs: t.GetExpiresMs(), CollapseKey: t.GetCollapseKey(), Priority: t.GetPriority(), IdempotencyKey: ikey,
			Receipt: receipt},
		Users: users, Ids: ids, PacedPerSecond: uint32(pace),
	}
	cctx, cancel := context.WithTimeout(ctx, multiStoreTimeout)
	rep, err := s.saver.StoreMulti(cctx, req, grpc.MaxCallSendMsgSize(maxGRPCMulti), grpc.MaxCallRecvMsgSize(maxGRPCMulti))
	cancel()
	if err != nil {
		s.log.Warn("center: multicast store failed", "users", len(users), "multicast", mcast, "err", err)
		switch {
		case status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
			return nil, errorf(CodeUnavailable, "message store did not confirm in time; the multicast may or may not have been stored (all of it or none), so retry with the same idempotency_key")
		case status.Code(err) == codes.ResourceExhausted:
			return nil, &apiError{Code: CodeUnavailable, retryAfter: 1, Message: "message store is busy with other multicasts; nothing was stored, retry shortly"}
		case !strings.HasPrefix(status.Convert(err).Message(), "saver: "):
			// Not saver's own answer: the connection broke, possibly
			// after the commit.
			return nil, errorf(CodeUnavailable, "lost the connection to the message store; the multicast may or may not have been stored (all of it or none), so retry with the same idempotency_key")
		}
		return nil, errorf(CodeUnavailable, "message store failed; nothing of this multicast was stored, retry the request")
	}
	out := &multicastResponse{QoS: 1, MulticastID: strconv.FormatUint(rep.GetMulticastId(), 10), DeliveriesPerSecond: pace}
	if rep.GetReplayed() {
		out.Replayed = true
		out.IDs = make(map[string]string, len(rep.GetUsers()))
		for i, u := range rep.GetUsers() {
			if i < len(rep.GetIds()) {
				out.IDs[u] = strconv.FormatUint(rep.GetIds()[i], 10)
			}
		}
		return out, nil
	}
	s.m.stored.Add(float64(len(msgs)))
	out.IDs = idsOf(msgs)
	started = true
	go s.fanout(app.Name, mcast, msgs, pace)
	return out, nil
}

func idsOf(msgs []*internalpb.Message) map[string]string {
	out := make(map[string]string, len(msgs))
	for _, m := range msgs {
		out[m.GetUser()] = strconv.FormatUint(m.GetId(), 10)
	}
	return out
}

// fanout delivers a stored multicast chunk by chunk at the app's pace and
// records its progress. It holds a fanout slot until it ends.
func (s *Server) fanout(app string, mcast uint64, msgs []*internalpb.Message, pace int) {
	defer func() {
		s.fanoutUsers.Add(-int64(len(msgs)))
		<-s.fanoutSlots
	}()
	s.m.fanouts.Inc()
	defer s.m.fanouts.Dec()
	budget := asyncDeliveryTimeout + fanoutSlack
	if pace > 0 {
		budget += time.Duration(float64(len(msgs)) / float64(pace) * float64(time.Second))
	}
	ctx, cancel := context.WithTimeout(s.stop, budget)
	defer cancel()
	key := progressKey(app, mcast)
	s.progress(ctx, func(p redis.Pipeliner) {
		p.HSet(ctx, key, "total", len(msgs), "sent", 0, "delivered", 0, "pace", pace, "started_ms", time.Now().UnixMilli())
		p.Expire(ctx, key, progressTTL)
	})
	for start := 0; start < len(msgs); start += multiChunk {
		chunk := msgs[start:min(start+multiChunk, len(msgs))]
		if err := s.pacer.Wait(ctx, app, pace, len(chunk)); err != nil {
			s.log.Warn("center: multicast delivery stopped; the rest stays stored for connect and the sweep",
				"multicast", mcast, "sent", start, "total", len(msgs), "err", err)
			return
		}
		n, err := s.deliver(ctx, chunk)
		if err != nil {
			s.log.Warn("center: multicast chunk lookup failed; it stays stored", "multicast", mcast, "err", err)
		}
		s.progress(ctx, func(p redis.Pipeliner) {
			p.HIncrBy(ctx, key, "sent", int64(len(chunk)))
			p.HIncrBy(ctx, key, "delivered", int64(n))
		})
	}
	s.progress(ctx, func(p redis.Pipeliner) { p.HSet(ctx, key, "finished_ms", time.Now().UnixMilli()) })
}

func progressKey(app string, mcast uint64) string {
	return "mcast:" + strconv.Itoa(len(app)) + ":" + app + ":" + strconv.FormatUint(mcast, 10)
}

// progress runs one pipelined progress update; progress is a convenience,
// so a failure is only counted.
func (s *Server) progress(ctx context.Context, f func(redis.Pipeliner)) {
	if s.rdb == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, progressTimeout)
	defer cancel()
	p := s.rdb.Pipeline()
	f(p)
	if _, err := p.Exec(cctx); err != nil {
		s.m.deliveryFails.WithLabelValues("progress").Inc()
		s.log.Debug("center: multicast progress not recorded", "err", err)
	}
}

// handleMulticast answers GET /v1/multicasts/{id}.
func (s *Server) handleMulticast(_ http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	raw := r.PathValue("id")
	id, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || id == 0 {
		return nil, fieldError("id", "multicast id must be the decimal multicast_id returned by POST /v1/push/multi, got "+strconv.Quote(raw))
	}
	if s.rdb == nil {
		return nil, errorf(CodeUnavailable, "multicast progress is not kept by this center (no Redis)")
	}
	cctx, cancel := context.WithTimeout(r.Context(), progressTimeout)
	defer cancel()
	h, err := s.rdb.HGetAll(cctx, progressKey(app.Name, id)).Result()
	if err != nil {
		s.log.Warn("center: multicast progress read failed", "id", id, "err", err)
		return nil, errorf(CodeUnavailable, "progress store is unavailable; retry shortly")
	}
	if len(h) == 0 {
		return nil, errorf(CodeNotFound, fmt.Sprintf("no multicast %s for app %s (QoS 0 multicasts have none; progress is kept %v)", raw, app.Name, progressTTL))
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(h[k], 10, 64); return n }
	out := multicastProgress{MulticastID: raw, State: "sending", Total: num("total"), Sent: num("sent"), Delivered: num("delivered"),
		DeliveriesPerSecond: num("pace"), StartedMS: num("started_ms"), FinishedMS: num("finished_ms")}
	if out.FinishedMS > 0 {
		out.State = "done"
	}
	return out, nil
}

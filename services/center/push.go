package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

type pushResponse struct {
	ID  string `json:"id"`
	QoS uint32 `json:"qos"`
	// Replayed: the idempotency key was used before; ID is that push's.
	Replayed bool `json:"replayed,omitempty"`
	// Delivered counts connections that took a QoS 0 message; QoS 1
	// answers before delivery, so it is absent there.
	Delivered *int `json:"delivered,omitempty"`
}

// appendJSON encodes r as json.Marshal does (TestPushResponseJSON). ID is
// always a decimal id, so it needs no escaping.
func (r pushResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, r.ID...)
	b = append(b, `","qos":`...)
	b = strconv.AppendUint(b, uint64(r.QoS), 10)
	if r.Replayed {
		b = append(b, `,"replayed":true`...)
	}
	if r.Delivered != nil {
		b = append(b, `,"delivered":`...)
		b = strconv.AppendInt(b, int64(*r.Delivered), 10)
	}
	return append(b, '}')
}

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	start := time.Now()
	// Before decoding: a flood past the limit costs at most one Redis call
	// each (fewer: concurrent checks share calls, ratelimit_batch.go).
	if e := s.limits.allowOne(r.Context(), app.Name, apiPush, app.Push()); e != nil {
		return nil, e
	}
	var req pushRequest
	if e := decodeBody(w, r, &req); e != nil {
		return nil, e
	}
	d, e := req.validate(app.Name)
	if e != nil {
		return nil, e
	}
	msgs, e := s.newMessages(app.Name, []string{req.User}, req.Device, d)
	if e != nil {
		return nil, e
	}
	msgs[0].IdempotencyKey = req.IdempotencyKey
	if e := applyReceipt(app, req.Receipt, d, msgs); e != nil {
		return nil, e
	}
	delivered, replaced, e := s.send(r.Context(), msgs)
	if e != nil {
		return nil, e
	}
	s.m.unicastLatency.observe(d.qos, time.Since(start).Seconds())
	out := pushResponse{ID: strconv.FormatUint(msgs[0].GetId(), 10), QoS: d.qos, Delivered: delivered}
	if first, ok := replaced[msgs[0].GetId()]; ok {
		out.ID, out.Replayed = strconv.FormatUint(first, 10), true
	}
	return out, nil
}

// newMessages builds one message per user, each with its own id, so acks
// and status are per user.
func (s *Server) newMessages(app string, users []string, device string, d delivery) ([]*internalpb.Message, *apiError) {
	now := time.Now()
	var expires int64
	if d.ttl > 0 {
		expires = now.Add(d.ttl).UnixMilli()
	}
	msgs := make([]*internalpb.Message, len(users))
	for i, u := range users {
		id, err := s.ids.Next()
		if err != nil {
			s.log.Error("center: id generation failed", "err", err)
			return nil, errorf(CodeUnavailable, "could not assign a message id; retry shortly")
		}
		msgs[i] = &internalpb.Message{
			Id: id, App: app, User: u, Device: device, Payload: d.payload, Qos: d.qos,
			CreatedMs: now.UnixMilli(), ExpiresMs: expires, State: internalpb.MessageState_MESSAGE_STATE_STORED,
			CollapseKey: d.opts.collapseKey, Priority: d.opts.priority,
		}
	}
	return msgs, nil
}

// send runs the QoS contract. QoS 1: store first and answer only once saver
// has committed; delivery follows in the background. QoS 0: deliver now and
// report how many connections took it. replaced maps the id of a message
// not stored, its idempotency key being taken, to the id that holds it;
// that message is not delivered again here.
func (s *Server) send(ctx context.Context, msgs []*internalpb.Message) (delivered *int, replaced map[uint64]uint64, e *apiError) {
	if msgs[0].GetQos() == 0 {
		n, err := s.deliver(ctx, msgs)
		if err != nil {
			s.log.Warn("center: qos 0 push failed", "err", err)
			return nil, nil, errorf(CodeUnavailable, "session lookup failed; the message was not sent, retry shortly")
		}
		return &n, nil, nil
	}
	replaced, err := s.storeQoS1(ctx, msgs)
	if err != nil {
		s.log.Warn("center: store failed", "count", len(msgs), "err", err)
		var ae *apiError
		if errors.As(err, &ae) {
			return nil, nil, ae
		}
		if status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
			// Saver may have committed just after we stopped waiting.
			return nil, nil, errorf(CodeUnavailable, "message store did not confirm in time; the message may or may not have been stored, so a retry without an idempotency_key may deliver it twice")
		}
		return nil, nil, errorf(CodeUnavailable, "message store is unavailable; nothing was accepted, retry the request")
	}
	fresh := msgs
	if len(replaced) > 0 {
		fresh = make([]*internalpb.Message, 0, len(msgs))
		for _, m := range msgs {
			if _, ok := replaced[m.GetId()]; !ok {
				fresh = append(fresh, m)
			}
		}
	}
	s.m.stored.Add(float64(len(fresh)))
	s.deliverAsync(ctx, append(fresh, s.replayed(ctx, msgs[0].GetApp(), replaced)...))
	return nil, replaced, nil
}

// replayed returns the stored messages a retry's idempotency key named,
// still waiting for an ACK, to be delivered again: the center that stored
// one may have died before delivering it (the likely reason for the
// retry), and the sweep would only find it seconds later. A copy already
// delivered is dropped by the SDK. What cannot be read here is left to the
// sweep.
func (s *Server) replayed(ctx context.Context, app string, replaced map[uint64]uint64) []*internalpb.Message {
	var out []*internalpb.Message
	for _, id := range replaced {
		cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
		rep, err := s.saver.Status(cctx, &internalpb.StatusRequest{App: app, Id: id})
		cancel()
		if err != nil || !rep.GetFound() {
			continue
		}
		switch m := rep.GetMessage(); m.GetState() {
		case internalpb.MessageState_MESSAGE_STATE_STORED, internalpb.MessageState_MESSAGE_STATE_DELIVERED:
			out = append(out, m)
		}
	}
	return out
}

// store makes msgs durable and returns those saver replaced by an earlier
// message with the same idempotency key.
func (s *Server) store(ctx context.Context, msgs []*internalpb.Message) (map[uint64]uint64, error) {
	var replaced map[uint64]uint64
	for start := 0; start < len(msgs); start += saverStoreChunk {
		end := min(start+saverStoreChunk, len(msgs))
		cctx, cancel := context.WithTimeout(ctx, storeTimeout)
		rep, err := s.saver.Store(cctx, &internalpb.StoreRequest{Messages: msgs[start:end]})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("saver: store %d messages from id %d: %w", end-start, msgs[start].GetId(), err)
		}
		for from, to := range rep.GetReplaced() {
			if replaced == nil {
				replaced = map[uint64]uint64{}
			}
			replaced[from] = to
		}
	}
	return replaced, nil
}

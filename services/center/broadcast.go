package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// broadcastRequest is the body of POST /v1/broadcast. Without a tag a
// broadcast goes to the whole app; with one, to the tag's members.
type broadcastRequest struct {
	App           string  `json:"app"`
	Payload       *string `json:"payload"`
	PayloadBase64 *string `json:"payload_base64"`
	QoS           *int    `json:"qos"`
	TTL           *int64  `json:"ttl"`
	// OnlineOnly: only connections online when it is sent get it; nobody
	// catches up on it later. Implied by qos 0.
	OnlineOnly *bool `json:"online_only"`
	// Tag limits it to the tag's members. An empty string is refused, not
	// read as "the whole app": a template whose tag came out empty must
	// not reach everyone.
	Tag *string `json:"tag"`
	// Receipt is accepted by the decoder only to refuse true with a
	// reason (receipt.go): a broadcast has no per-user rows.
	Receipt bool `json:"receipt"`
}

type broadcastResponse struct {
	ID         string `json:"id"`
	Seq        uint64 `json:"seq"`
	QoS        uint32 `json:"qos"`
	OnlineOnly bool   `json:"online_only"`
	// Rooms is how many rooms it is being sent to.
	Rooms     int   `json:"rooms"`
	ExpiresMS int64 `json:"expires_ms"`
	// Tag is the request's tag; absent for an app-wide broadcast.
	Tag string `json:"tag,omitempty"`
}

// broadcastPlan is what a validated broadcast body boils down to.
type broadcastPlan struct {
	payload    []byte
	qos        uint32
	ttl        time.Duration
	onlineOnly bool
	tag        string
}

func (q *broadcastRequest) validate(keyApp string) (broadcastPlan, *apiError) {
	if e := checkApp(q.App, keyApp); e != nil {
		return broadcastPlan{}, e
	}
	d, e := checkDelivery(q.Payload, q.PayloadBase64, q.QoS, q.TTL)
	if e != nil {
		return broadcastPlan{}, e
	}
	if q.Receipt {
		return broadcastPlan{}, broadcastReceiptError()
	}
	p := broadcastPlan{payload: d.payload, qos: d.qos, ttl: defaultTTL}
	if q.Tag != nil {
		if e := checkTag(*q.Tag); e != nil {
			return p, e
		}
		p.tag = *q.Tag
	}
	// A broadcast is stored whatever its qos (one row gives it its seq
	// and its progress), so qos 0 gets a ttl too; it bounds resends.
	if q.TTL != nil && *q.TTL > 0 {
		p.ttl = time.Duration(*q.TTL) * time.Second
	}
	if q.OnlineOnly != nil {
		p.onlineOnly = *q.OnlineOnly
	}
	if p.qos == 0 {
		if q.OnlineOnly != nil && !*q.OnlineOnly {
			return p, fieldError("online_only", "a qos 0 broadcast is at most once and never caught up: omit online_only or use qos 1")
		}
		p.onlineOnly = true
	}
	return p, nil
}

func (s *Server) handleBroadcast(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	var req broadcastRequest
	if e := decodeBody(w, r, &req); e != nil {
		return nil, e
	}
	p, e := req.validate(app.Name)
	if e != nil {
		return nil, e
	}
	// Checked after validation, so a malformed body costs no token.
	if e := s.limits.allow(r.Context(), app.Name, apiBroadcast, app.Broadcast(), 1); e != nil {
		return nil, e
	}
	id, err := s.ids.Next()
	if err != nil {
		s.log.Error("center: id generation failed", "err", err)
		return nil, errorf(CodeUnavailable, "could not assign a broadcast id; retry shortly")
	}
	now := time.Now()
	b := &internalpb.Broadcast{
		Id: id, App: app.Name, Tag: p.tag, Payload: p.payload, Qos: p.qos, OnlineOnly: p.onlineOnly,
		CreatedMs: now.UnixMilli(), ExpiresMs: now.Add(p.ttl).UnixMilli(),
	}
	rooms := s.bcast.liveRooms()
	ids := make([]string, len(rooms))
	for i, in := range rooms {
		ids[i] = in.ID
	}
	cctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	rep, err := s.saver.StoreBroadcast(cctx, &internalpb.StoreBroadcastRequest{Broadcast: b, Rooms: ids})
	cancel()
	if err != nil {
		s.log.Warn("center: broadcast store failed", "id", id, "err", err)
		if status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
			return nil, errorf(CodeUnavailable, "broadcast store did not confirm in time; it may or may not have been stored (GET /v1/messages/"+strconv.FormatUint(id, 10)+" tells)")
		}
		return nil, errorf(CodeUnavailable, "broadcast store is unavailable; nothing was accepted, retry the request")
	}
	b.Seq, b.CreatedMs = rep.GetSeq(), rep.GetCreatedMs()
	s.bcast.sendAll(b, rooms)
	return broadcastResponse{
		ID: strconv.FormatUint(id, 10), Seq: b.Seq, QoS: b.Qos, OnlineOnly: b.OnlineOnly,
		Rooms: len(rooms), ExpiresMS: b.ExpiresMs, Tag: p.tag,
	}, nil
}

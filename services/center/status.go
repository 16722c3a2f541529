package main

import (
	"context"
	"net/http"
	"strconv"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

type statusResponse struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	DeliveryCount uint32 `json:"delivery_count"`
	CreatedMS     int64  `json:"created_ms"`
	ExpiresMS     int64  `json:"expires_ms"`
}

func stateName(st internalpb.MessageState) string {
	switch st {
	case internalpb.MessageState_MESSAGE_STATE_STORED:
		return "stored"
	case internalpb.MessageState_MESSAGE_STATE_DELIVERED:
		return "delivered"
	case internalpb.MessageState_MESSAGE_STATE_ACKED:
		return "acked"
	case internalpb.MessageState_MESSAGE_STATE_EXPIRED:
		return "expired"
	case internalpb.MessageState_MESSAGE_STATE_DEAD:
		return "dead"
	case internalpb.MessageState_MESSAGE_STATE_COLLAPSED:
		return "collapsed"
	}
	return "unknown"
}

func (s *Server) handleStatus(_ http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	raw := r.PathValue("id")
	id, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || id == 0 {
		return nil, fieldError("id", "message id must be the decimal id returned by POST /v1/push, got "+strconv.Quote(raw))
	}
	cctx, cancel := context.WithTimeout(r.Context(), downstreamTimeout)
	defer cancel()
	resp, err := s.saver.Status(cctx, &internalpb.StatusRequest{App: app.Name, Id: id})
	if err != nil {
		s.log.Warn("center: status failed", "id", id, "err", err)
		return nil, errorf(CodeUnavailable, "message store is unavailable; retry shortly")
	}
	m := resp.GetMessage()
	// Saver scopes by app already; the check keeps one app from reading
	// another's message even if it did not.
	if !resp.GetFound() || m == nil || (m.GetApp() != "" && m.GetApp() != app.Name) {
		// Broadcast ids come from the same generator: not a message, maybe a broadcast.
		if out, found, e := s.broadcastStatus(r.Context(), app.Name, id); found || e != nil {
			return out, e
		}
		return nil, errorf(CodeNotFound, "no message "+raw+" for app "+app.Name+" (QoS 0 messages are never stored)")
	}
	return statusResponse{
		ID: strconv.FormatUint(id, 10), State: stateName(m.GetState()), DeliveryCount: m.GetDeliveryCount(),
		CreatedMS: m.GetCreatedMs(), ExpiresMS: m.GetExpiresMs(),
	}, nil
}

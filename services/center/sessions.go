package main

import (
	"net/http"

	"github.com/pushgw/pushgw/pkg/appconfig"
)

type sessionView struct {
	Device   string `json:"device"`
	RoomID   string `json:"room_id"`
	ConnID   uint64 `json:"conn_id"`
	LoginMS  int64  `json:"login_ms"`
	ClientIP string `json:"client_ip"`
	Platform string `json:"platform"`
}

type sessionsResponse struct {
	Sessions []sessionView `json:"sessions"`
}

type kickResponse struct {
	Kicked int `json:"kicked"`
}

func (s *Server) handleSessions(_ http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	if e := checkApp(r.PathValue("app"), app.Name); e != nil {
		return nil, e
	}
	user := r.PathValue("user")
	if e := checkUser("user", user); e != nil {
		return nil, e
	}
	sessions, err := s.lookup(r.Context(), app.Name, []string{user})
	if err != nil {
		s.log.Warn("center: sessions lookup failed", "err", err)
		return nil, errorf(CodeUnavailable, "session store is unavailable; retry shortly")
	}
	out := sessionsResponse{Sessions: make([]sessionView, 0, len(sessions))}
	for _, ss := range sessions {
		if ss.GetUser() != user {
			continue
		}
		out.Sessions = append(out.Sessions, sessionView{
			Device: ss.GetDevice(), RoomID: ss.GetRoomId(), ConnID: ss.GetConnId(), LoginMS: ss.GetLoginMs(),
			ClientIP: ss.GetClientIp(), Platform: ss.GetPlatform(),
		})
	}
	return out, nil
}

func (s *Server) handleKick(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	var req kickRequest
	if e := decodeBody(w, r, &req); e != nil {
		return nil, e
	}
	if e := req.validate(app.Name); e != nil {
		return nil, e
	}
	n, err := s.kick(r.Context(), app.Name, req.User, req.Device, req.Reason)
	if err != nil {
		s.log.Warn("center: kick failed", "err", err)
		return nil, errorf(CodeUnavailable, "could not reach the session store or rooms; retry the kick")
	}
	return kickResponse{Kicked: n}, nil
}

package main

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// broadcastStatusResponse answers GET /v1/messages/{id} for a broadcast.
type broadcastStatusResponse struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Seq  uint64 `json:"seq"`
	// State: "sending" while a room has not confirmed, "done" once every
	// room confirmed or was given up, "expired" past the ttl.
	State          string               `json:"state"`
	QoS            uint32               `json:"qos"`
	OnlineOnly     bool                 `json:"online_only"`
	CreatedMS      int64                `json:"created_ms"`
	ExpiresMS      int64                `json:"expires_ms"`
	RoomsTotal     int                  `json:"rooms_total"`
	RoomsDone      int                  `json:"rooms_done"`
	RoomsAbandoned int                  `json:"rooms_abandoned"`
	Reached        uint64               `json:"reached"`
	Acked          uint64               `json:"acked"`
	Rooms          []broadcastRoomState `json:"rooms"`
	// Tag is the broadcast's tag; absent for an app-wide one. Reached
	// counts the tag's members only.
	Tag string `json:"tag,omitempty"`
}

type broadcastRoomState struct {
	Room     string `json:"room"`
	State    string `json:"state"`
	Reached  uint64 `json:"reached"`
	Acked    uint64 `json:"acked"`
	Attempts uint32 `json:"attempts"`
}

// broadcastStatus reports broadcast id of app; found is false when there
// is no such broadcast.
func (s *Server) broadcastStatus(ctx context.Context, app string, id uint64) (out any, found bool, e *apiError) {
	cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
	defer cancel()
	rep, err := s.saver.BroadcastStatus(cctx, &internalpb.BroadcastStatusRequest{App: app, Id: id})
	if status.Code(err) == codes.Unimplemented {
		// A saver older than broadcasts (rolling upgrade) has none.
		return nil, false, nil
	}
	if err != nil {
		s.log.Warn("center: broadcast status failed", "id", id, "err", err)
		return nil, false, errorf(CodeUnavailable, "message store is unavailable; retry shortly")
	}
	b := rep.GetBroadcast()
	if !rep.GetFound() || b == nil || b.GetApp() != app {
		return nil, false, nil
	}
	r := broadcastStatusResponse{
		ID: strconv.FormatUint(id, 10), Kind: "broadcast", Seq: b.GetSeq(), QoS: b.GetQos(), OnlineOnly: b.GetOnlineOnly(),
		CreatedMS: b.GetCreatedMs(), ExpiresMS: b.GetExpiresMs(), RoomsTotal: len(rep.GetRooms()), Tag: b.GetTag(),
		Rooms: make([]broadcastRoomState, 0, len(rep.GetRooms())),
	}
	for _, rs := range rep.GetRooms() {
		st := "sending"
		switch {
		case rs.GetDone():
			st = "done"
			r.RoomsDone++
		case rs.GetAbandoned():
			st = "abandoned"
			r.RoomsAbandoned++
		}
		r.Reached += rs.GetReached()
		r.Acked += rs.GetAcked()
		r.Rooms = append(r.Rooms, broadcastRoomState{Room: rs.GetRoom(), State: st, Reached: rs.GetReached(), Acked: rs.GetAcked(), Attempts: rs.GetAttempts()})
	}
	switch {
	case r.RoomsDone+r.RoomsAbandoned == r.RoomsTotal:
		r.State = "done"
	case b.GetExpiresMs() > 0 && b.GetExpiresMs() <= time.Now().UnixMilli():
		r.State = "expired"
	default:
		r.State = "sending"
	}
	return r, true, nil
}

package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Fan-out of a stored broadcast: one Room.Broadcast per room, in
// parallel, each with its own deadline; a room that answers is marked done
// at saver with the connections it reached. A room that could not be
// reached at all is sent it again within seconds (broadcast_resend.go);
// one that still did not confirm stays pending and the broadcast sweep
// sends it again.
const (
	// broadcastRoomTimeout is the deadline of one room's fan-out. A room
	// gives 18,000 connections a shared frame in milliseconds; the margin
	// is for a loaded box.
	broadcastRoomTimeout = 10 * time.Second
	// maxBroadcastFanOuts bounds the room calls in flight from one center;
	// beyond it a room's call is left to the sweep.
	maxBroadcastFanOuts = 256
	// broadcastMinAge is how long a room may stay unconfirmed before the
	// sweep resends: past the live call's deadline.
	broadcastMinAge = broadcastRoomTimeout + 2*time.Second
	// broadcastClaimLimit bounds one sweep round.
	broadcastClaimLimit = 200
)

// broadcastSender sends broadcasts to rooms.
type broadcastSender struct {
	s     *Server
	rooms *discovery.Watcher
	slots chan struct{}
	log   *slog.Logger
	// resends are the waits before each quick resend to a room that
	// could not be reached (broadcast_resend.go); empty: none, a failed
	// call is left to the sweep.
	resends []time.Duration
	// waiting counts fan-outs between two tries, which hold no slot;
	// it is bounded by maxBroadcastResendWaits.
	waiting atomic.Int64
	// ctx ends the waits of quick resends at shutdown (stop).
	ctx    context.Context
	cancel context.CancelFunc

	wg sync.WaitGroup
}

func newBroadcastSender(s *Server, rooms *discovery.Watcher) *broadcastSender {
	ctx, cancel := context.WithCancel(context.Background())
	return &broadcastSender{s: s, rooms: rooms, slots: make(chan struct{}, maxBroadcastFanOuts), log: s.log,
		resends: broadcastResendDelays(defaultBroadcastResends), ctx: ctx, cancel: cancel}
}

// liveRooms lists the rooms in etcd, draining ones included: they still
// hold connections.
func (bs *broadcastSender) liveRooms() []discovery.Instance {
	if bs.rooms == nil {
		return nil
	}
	var out []discovery.Instance
	for _, in := range bs.rooms.Instances() {
		if in.ID != "" && in.Addr != "" {
			out = append(out, in)
		}
	}
	return out
}

// sendAll starts b's fan-out to rooms in the background.
func (bs *broadcastSender) sendAll(b *internalpb.Broadcast, rooms []discovery.Instance) {
	for _, in := range rooms {
		select {
		case bs.slots <- struct{}{}:
		default:
			bs.s.m.deliveryFails.WithLabelValues("broadcast_busy").Inc()
			bs.log.Warn("center: too many broadcast calls in flight; room left to the sweep", "id", b.GetId(), "room", in.ID)
			continue
		}
		bs.wg.Add(1)
		go func(in discovery.Instance) {
			defer bs.wg.Done()
			bs.sendResending(b, in)
		}(in)
	}
}

// sendRoom sends b to one room and records the outcome: ok when the room
// confirmed; unreachable when the call failed for want of a connection
// (the room may not have seen it), which a quick resend may cure.
func (bs *broadcastSender) sendRoom(ctx context.Context, b *internalpb.Broadcast, in discovery.Instance) (ok, unreachable bool) {
	rc, err := bs.s.rooms.client(in.Addr)
	if err != nil {
		bs.s.m.deliveryFails.WithLabelValues("broadcast_room").Inc()
		bs.log.Warn("center: broadcast room unreachable", "id", b.GetId(), "room", in.ID, "err", err)
		return false, true
	}
	share := bs.paceShare(b.GetApp(), len(bs.liveRooms()))
	cctx, cancel := context.WithTimeout(ctx, roomTimeout(b, share, time.Now()))
	rep, err := rc.Broadcast(cctx, &internalpb.RoomBroadcastRequest{Broadcast: b, DeliveriesPerSecond: share})
	cancel()
	if pacedStillRunning(err) {
		bs.log.Debug("center: paced broadcast still running in the room", "id", b.GetId(), "room", in.ID)
		return false, false
	}
	if err != nil {
		bs.s.m.deliveryFails.WithLabelValues("broadcast_room").Inc()
		bs.log.Warn("center: room broadcast failed", "id", b.GetId(), "seq", b.GetSeq(), "room", in.ID, "err", err)
		return false, status.Code(err) == codes.Unavailable
	}
	bs.s.m.delivered.Add(float64(rep.GetReached() + rep.GetReported()))
	cctx, cancel = context.WithTimeout(ctx, downstreamTimeout)
	_, err = bs.s.saver.BroadcastProgress(cctx, &internalpb.BroadcastProgressRequest{Items: []*internalpb.BroadcastRoomProgress{
		{BroadcastId: b.GetId(), Room: in.ID, Reached: rep.GetReached(), Done: true},
	}})
	cancel()
	if err != nil {
		// The room is resent to later and reaches nobody twice; only the
		// reached count of this call is lost.
		bs.log.Warn("center: broadcast progress not recorded", "id", b.GetId(), "room", in.ID, "err", err)
		return false, false
	}
	bs.log.Debug("center: broadcast sent", "id", b.GetId(), "seq", b.GetSeq(), "room", in.ID, "reached", rep.GetReached(), "deferred", rep.GetDeferred())
	return true, false
}

// stop ends the waits of quick resends (their rooms are left to the sweep
// of another center) and waits for the calls in flight, up to ctx.
func (bs *broadcastSender) stop(ctx context.Context) error {
	bs.cancel()
	return bs.wait(ctx)
}

// wait waits for fan-outs in flight, up to ctx.
func (bs *broadcastSender) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { bs.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

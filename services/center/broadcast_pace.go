package main

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Broadcast pacing: an app's deliveries_per_second is split evenly over
// the rooms in etcd and each Room.Broadcast carries its room's share; the
// room sends its connections in chunks at that rate (services/room/
// broadcast_pace.go). Splitting by room count needs no shared state on
// the delivery path and never exceeds the app's rate (the share rounds
// down); its cost is that a room with few connections of the app finishes
// early and leaves its share unused, so a broadcast over unevenly loaded
// rooms runs below the rate rather than above it. Unlike the multicast's
// Redis pacer, two broadcasts of one app at once each get the full rate.
const (
	// broadcastPacedTimeout bounds a paced room call: a room that cannot
	// give all its connections the broadcast within it stops and the
	// sweep resends the rest (10 minutes is 60,000 connections at
	// 100/s per room).
	broadcastPacedTimeout = 10 * time.Minute
)

// paceShare is the deliveries per second each of rooms may make for app's
// broadcasts: 0 when the app is unpaced.
func (bs *broadcastSender) paceShare(app string, rooms int) uint32 {
	a, ok := bs.s.apps.Get(app)
	if !ok || a.DeliveriesPerSecond <= 0 {
		return 0
	}
	return uint32(max(a.DeliveriesPerSecond/max(rooms, 1), 1))
}

// roomTimeout is the deadline of a room call for b: a paced one runs as
// long as the pace needs, up to broadcastPacedTimeout or b's expiry.
func roomTimeout(b *internalpb.Broadcast, share uint32, now time.Time) time.Duration {
	if share == 0 {
		return broadcastRoomTimeout
	}
	d := broadcastPacedTimeout
	if exp := b.GetExpiresMs(); exp > 0 {
		d = min(d, time.UnixMilli(exp).Sub(now))
	}
	return max(d, broadcastRoomTimeout)
}

// pacedStillRunning reports a room's refusal of a resend because the
// first paced call still runs there: not a failure worth a warning.
func pacedStillRunning(err error) bool {
	return status.Code(err) == codes.Aborted
}

package main

import (
	"context"
	"time"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Quick resend: a room call that failed for want of a connection (the
// room just restarted and center's connection to its address still backs
// off, or the room hung long enough for the connect to time out) is sent
// again after 0.25, 0.5, 1 and 2 s while the room stays listed in etcd,
// instead of being left to the sweep, which resends only after
// broadcastMinAge. Meanwhile a client of that room may get later
// broadcasts live and move to another room reporting a seq past the
// missed one, which its catch-up then skips (a fault run lost one
// broadcast to 6 clients that way). A room gives a broadcast to each
// connection at most once, so a resend of one it did get reaches nobody
// twice; the sweep still covers whatever the quick resends did not.
const (
	// defaultBroadcastResends is -broadcast-resends.
	defaultBroadcastResends = 4
	// maxBroadcastResends bounds -broadcast-resends so that the waits
	// (0.25 + 0.5 + 1 + 2 + 2 + 2 = 7.75 s) end before the sweep's first
	// resend at broadcastMinAge.
	maxBroadcastResends = 6
	// firstBroadcastResend is the first wait; each next one doubles, up
	// to maxBroadcastResendWait.
	firstBroadcastResend   = 250 * time.Millisecond
	maxBroadcastResendWait = 2 * time.Second
	// maxBroadcastResendWaits bounds the fan-outs waiting for their next
	// try. A waiting fan-out gives its call slot back, so a room that
	// keeps refusing cannot crowd live calls to healthy rooms out of the
	// slots; beyond this bound a room is left to the sweep.
	maxBroadcastResendWaits = maxBroadcastFanOuts
)

// broadcastResendDelays are the waits before each of n quick resends.
func broadcastResendDelays(n int) []time.Duration {
	out := make([]time.Duration, n)
	d := firstBroadcastResend
	for i := range out {
		out[i] = d
		d = min(2*d, maxBroadcastResendWait)
	}
	return out
}

// sendResending sends b to in on the slot sendAll took for it, gives the
// slot back, and resends while the room stays unreachable, taking a slot
// again for each try.
func (bs *broadcastSender) sendResending(b *internalpb.Broadcast, in discovery.Instance) {
	ok, unreachable := bs.sendRoom(context.Background(), b, in)
	<-bs.slots
	for try := 0; !ok && unreachable && try < len(bs.resends); try++ {
		if why := bs.pause(bs.resends[try]); why != "" {
			bs.log.Warn("center: broadcast room not resent to; left to the sweep", "id", b.GetId(), "room", in.ID, "why", why)
			return
		}
		if !bs.listed(in) {
			bs.log.Debug("center: broadcast room no longer listed; its clients catch up elsewhere", "id", b.GetId(), "room", in.ID)
			return
		}
		select {
		case bs.slots <- struct{}{}:
		default:
			bs.s.m.deliveryFails.WithLabelValues("broadcast_busy").Inc()
			bs.log.Warn("center: too many broadcast calls in flight; room left to the sweep", "id", b.GetId(), "room", in.ID)
			return
		}
		ok, unreachable = bs.sendRoom(context.Background(), b, in)
		<-bs.slots
		result := "failed"
		if ok {
			result = "ok"
			bs.log.Info("center: broadcast resent to a room that was unreachable", "id", b.GetId(), "room", in.ID, "resend", try+1)
		}
		bs.s.m.broadcastResends.WithLabelValues(result).Inc()
	}
	if !ok && unreachable {
		bs.log.Warn("center: broadcast room still unreachable; left to the sweep", "id", b.GetId(), "room", in.ID, "resends", len(bs.resends))
	}
}

// pause waits d before a resend, holding no slot; it says why not when
// center is stopping or too many fan-outs wait already.
func (bs *broadcastSender) pause(d time.Duration) (why string) {
	if bs.waiting.Add(1) > maxBroadcastResendWaits {
		bs.waiting.Add(-1)
		bs.s.m.deliveryFails.WithLabelValues("broadcast_busy").Inc()
		return "too many resends waiting"
	}
	defer bs.waiting.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return ""
	case <-bs.ctx.Done():
		return "center stopping"
	}
}

// listed reports whether in is still a room in etcd at the same address.
func (bs *broadcastSender) listed(in discovery.Instance) bool {
	for _, r := range bs.liveRooms() {
		if r.ID == in.ID && r.Addr == in.Addr {
			return true
		}
	}
	return false
}

package main

import (
	"context"
	"sync"
	"time"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// The broadcast sweep resends a broadcast to each room that has not
// confirmed it (down, hung or restarted when it went out, or the center
// sending it died): saver hands out unconfirmed (broadcast, room) pairs
// with a backoff, and a room gives a repeated broadcast to nobody twice.
// A room no longer in etcd is skipped; its clients reconnect elsewhere
// and catch up.
type broadcastSweeper struct {
	bs       *broadcastSender
	interval time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
}

func startBroadcastSweeper(bs *broadcastSender, interval time.Duration) *broadcastSweeper {
	ctx, cancel := context.WithCancel(context.Background())
	w := &broadcastSweeper{bs: bs, interval: interval, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	return w
}

func (w *broadcastSweeper) run(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.sweep(ctx)
		}
	}
}

// sweep claims one round and resends it, every room call in parallel.
func (w *broadcastSweeper) sweep(ctx context.Context) {
	bs := w.bs
	cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
	rep, err := bs.s.saver.ClaimBroadcastRooms(cctx, &internalpb.ClaimBroadcastRoomsRequest{
		Limit: broadcastClaimLimit, MinAgeMs: broadcastMinAge.Milliseconds(),
	})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			bs.s.m.deliveryFails.WithLabelValues("broadcast_claim").Inc()
			bs.log.Warn("center: broadcast claim failed; retrying next round", "err", err)
		}
		return
	}
	if len(rep.GetClaims()) == 0 {
		return
	}
	byID := map[string]discovery.Instance{}
	for _, in := range bs.liveRooms() {
		byID[in.ID] = in
	}
	var wg sync.WaitGroup
	for _, c := range rep.GetClaims() {
		in, ok := byID[c.GetRoom()]
		if !ok {
			bs.log.Debug("center: broadcast room not in etcd; claimed again later", "id", c.GetBroadcast().GetId(), "room", c.GetRoom())
			continue
		}
		if bs.paceShare(c.GetBroadcast().GetApp(), 1) > 0 {
			// A paced resend may run for minutes: it goes in the
			// background like a live fan-out, so it does not hold up
			// this round's other resends.
			bs.sendAll(c.GetBroadcast(), []discovery.Instance{in})
			continue
		}
		wg.Add(1)
		go func(c *internalpb.BroadcastRoomClaim) {
			defer wg.Done()
			if ok, _ := bs.sendRoom(ctx, c.GetBroadcast(), in); ok {
				bs.s.m.redelivered.Inc()
			}
		}(c)
	}
	wg.Wait()
}

func (w *broadcastSweeper) stop() {
	w.cancel()
	<-w.done
}

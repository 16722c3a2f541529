package main

import (
	"context"
	"time"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// progressLoop reports catch-up deliveries and acks of broadcasts to saver
// as counters every progressInterval, and once more at close.
func (bc *broadcaster) progressLoop() {
	defer close(bc.stopped)
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-bc.stop:
			bc.flushProgress()
			return
		case <-t.C:
			bc.flushProgress()
		}
	}
}

type progressDelta struct {
	e              *bcEntry
	reached, acked uint64
}

// flushProgress takes the counts gathered since the last flush; a batch
// saver refuses is added back for the next flush.
func (bc *broadcaster) flushProgress() {
	var deltas []progressDelta
	bc.mu.RLock()
	for _, e := range bc.byID {
		r, a := e.reached.Swap(0), e.acked.Swap(0)
		if r != 0 || a != 0 {
			deltas = append(deltas, progressDelta{e, r, a})
		}
	}
	bc.mu.RUnlock()
	for start := 0; start < len(deltas); start += progressBatch {
		chunk := deltas[start:min(start+progressBatch, len(deltas))]
		req := &internalpb.BroadcastProgressRequest{Items: make([]*internalpb.BroadcastRoomProgress, len(chunk))}
		for i, d := range chunk {
			req.Items[i] = &internalpb.BroadcastRoomProgress{BroadcastId: d.e.b.GetId(), Room: bc.r.instance, Reached: d.reached, Acked: d.acked}
		}
		ctx, cancel := context.WithTimeout(context.Background(), grpcconn.DefaultCallTimeout)
		_, err := bc.r.saver.BroadcastProgress(ctx, req)
		cancel()
		if err != nil {
			bc.r.m.peerErrors.WithLabelValues("Saver.BroadcastProgress").Inc()
			for _, d := range chunk {
				d.e.reached.Add(d.reached)
				d.e.acked.Add(d.acked)
			}
		}
	}
}

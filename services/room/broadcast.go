package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/ants/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Broadcast fan-out: center sends one Room.Broadcast per room; the room
// writes one shared PUSH frame to each authenticated connection of the app,
// a hub shard at a time, on the RPC's goroutine (never a connection's
// reader), with at most broadcastFanOuts fan-outs running at once.
const (
	broadcastFanOuts = 4
	// trackedBroadcasts bounds the broadcasts whose frame and counters the
	// room keeps (for catch-ups and for counting acks); the oldest goes
	// first.
	trackedBroadcasts = 256
	// progressInterval is how often catch-up deliveries and acks are
	// reported to saver as counters.
	progressInterval = time.Second
	progressBatch    = 500
)

// bcEntry is one broadcast the room has sent: its frame, shared by every
// connection, and counts not yet reported to saver.
type bcEntry struct {
	b     *internalpb.Broadcast
	frame []byte
	// reached counts catch-up deliveries (live ones are counted by center
	// from the RPC's reply); acked counts client ACKs.
	reached atomic.Uint64
	acked   atomic.Uint64
}

// broadcaster is the room's broadcast state.
type broadcaster struct {
	r     *room
	seen  seenLocks
	slots chan struct{}
	// catchUps runs login catch-ups; nonblocking, a refused one is retried.
	catchUps *ants.Pool
	// batch joins the catch-up reads of one window in one call.
	batch *catchUpBatcher
	// retryDelays pace retries of a failed catch-up read.
	retryDelays []time.Duration

	mu    sync.RWMutex
	byID  map[uint64]*bcEntry
	order []uint64 // insertion order, for eviction
	// pacing holds the ids of paced fan-outs running (broadcast_pace.go).
	pacing  map[uint64]struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func newBroadcaster(r *room) (*broadcaster, error) {
	p, err := ants.NewPool(catchUpWorkers, ants.WithNonblocking(true))
	if err != nil {
		return nil, fmt.Errorf("room: catch-up pool: %w", err)
	}
	bc := &broadcaster{r: r, slots: make(chan struct{}, broadcastFanOuts), catchUps: p, retryDelays: defaultCatchUpRetries(),
		byID: map[uint64]*bcEntry{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	if r.cfg.noCatchUpRetry {
		bc.retryDelays = nil
	}
	bc.batch = newCatchUpBatcher(bc, catchUpBatchSize, catchUpBatchDelay)
	go bc.progressLoop()
	return bc, nil
}

// close stops the progress loop after a last report.
func (bc *broadcaster) close() {
	close(bc.stop)
	<-bc.stopped
	bc.batch.close()
	bc.catchUps.Release()
}

// broadcastFrame encodes b as a PUSH frame carrying its seq.
func broadcastFrame(b *internalpb.Broadcast) ([]byte, error) {
	return protocol.AppendMessage(nil, protocol.OpPush, 0, &clientpb.Push{
		Id: b.GetId(), App: b.GetApp(), Payload: b.GetPayload(), Qos: b.GetQos(),
		CreatedMs: b.GetCreatedMs(), ExpiresMs: b.GetExpiresMs(), BroadcastSeq: b.GetSeq(),
	})
}

// track returns the entry of b, encoding and keeping it if new.
func (bc *broadcaster) track(b *internalpb.Broadcast) (*bcEntry, error) {
	bc.mu.RLock()
	e := bc.byID[b.GetId()]
	bc.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	frame, err := broadcastFrame(b)
	if err != nil {
		return nil, err
	}
	if len(frame)-protocol.HeaderSize > bc.r.cfg.maxFrame {
		return nil, fmt.Errorf("broadcast %d: frame body of %d bytes exceeds -max-frame %d", b.GetId(), len(frame)-protocol.HeaderSize, bc.r.cfg.maxFrame)
	}
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if e := bc.byID[b.GetId()]; e != nil {
		return e, nil
	}
	e = &bcEntry{b: b, frame: frame}
	bc.byID[b.GetId()] = e
	bc.order = append(bc.order, b.GetId())
	if len(bc.order) > trackedBroadcasts {
		// Counts of an evicted entry not yet reported are lost: it would
		// take trackedBroadcasts newer broadcasts within one
		// progressInterval.
		delete(bc.byID, bc.order[0])
		bc.order = append(bc.order[:0], bc.order[1:]...)
	}
	return e, nil
}

// countAcks counts the acked ids that are tracked broadcasts and returns
// the others (unicast messages, for saver's Report).
func (bc *broadcaster) countAcks(ids []uint64) []uint64 {
	bc.mu.RLock()
	defer bc.mu.RUnlock()
	if len(bc.byID) == 0 {
		return ids
	}
	rest := ids[:0:0]
	for _, id := range ids {
		if e := bc.byID[id]; e != nil {
			e.acked.Add(1)
			continue
		}
		rest = append(rest, id)
	}
	return rest
}

// fanOut gives e to every authenticated connection of its app once and
// returns how many took it now and how many were left to their catch-up.
func (bc *broadcaster) fanOut(e *bcEntry) (reached, deferred uint64) {
	app, seq := e.b.GetApp(), e.b.GetSeq()
	var buf []*session
	h := bc.r.hub
	for i := range h.byID {
		is := &h.byID[i]
		is.mu.RLock()
		buf = buf[:0]
		for _, s := range is.m {
			if s.isAuthed() && s.key.app == app {
				buf = append(buf, s)
			}
		}
		is.mu.RUnlock()
		var n uint64
		for _, s := range buf {
			if s.has(flagClosed) {
				continue
			}
			send, def := bc.seen.claim(s, seq, true)
			if def {
				deferred++
			}
			if send && s.send(protocol.OpPush, e.frame) == nil {
				n++
			}
		}
		reached += n
		bc.r.m.pushes.Add(float64(n))
	}
	return reached, deferred
}

// checkBroadcast rejects a broadcast this room cannot fan out.
func checkBroadcast(b *internalpb.Broadcast) error {
	switch {
	case b == nil:
		return status.Error(codes.InvalidArgument, "room: broadcast missing")
	case b.GetId() == 0 || b.GetSeq() == 0 || b.GetApp() == "":
		return status.Errorf(codes.InvalidArgument, "room: broadcast needs id, seq and app (id %d, seq %d)", b.GetId(), b.GetSeq())
	case b.GetTag() != "" && limits.CheckTag(b.GetTag()) != nil:
		return status.Errorf(codes.InvalidArgument, "room: broadcast %d: %v", b.GetId(), limits.CheckTag(b.GetTag()))
	case b.GetQos() > 1:
		return status.Errorf(codes.InvalidArgument, "room: broadcast %d: qos %d", b.GetId(), b.GetQos())
	}
	return nil
}

func (g *roomRPC) Broadcast(ctx context.Context, req *internalpb.RoomBroadcastRequest) (*internalpb.RoomBroadcastReply, error) {
	b := req.GetBroadcast()
	if err := checkBroadcast(b); err != nil {
		return nil, err
	}
	if b.GetExpiresMs() > 0 && b.GetExpiresMs() <= time.Now().UnixMilli() {
		return &internalpb.RoomBroadcastReply{}, nil
	}
	bc := g.r.bc
	e, err := bc.track(b)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "room: "+err.Error())
	}
	if rate := req.GetDeliveriesPerSecond(); rate > 0 {
		return bc.broadcastPaced(ctx, e, int(rate))
	}
	select {
	case bc.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	// Once started, the fan-out finishes even if the caller stops
	// waiting: center resends unconfirmed ones, and a repeat is a no-op.
	var reached, deferred uint64
	if b.GetTag() == "" {
		reached, deferred = bc.fanOut(e)
	} else {
		reached, deferred, err = bc.fanOutTag(e)
	}
	<-bc.slots
	if err != nil {
		// The connections given it so far are skipped by the resend.
		g.r.log.Warn("room: tag broadcast fan-out incomplete", "id", b.GetId(), "reached", reached, "err", err)
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &internalpb.RoomBroadcastReply{Reached: reached, Deferred: deferred}, nil
}

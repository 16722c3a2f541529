package main

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Paced broadcast fan-out. Center splits the app's deliveries_per_second
// evenly over the rooms it sends to and passes each room its share; the
// room then gives the frame to its connections in chunks, a chunk every
// 1/pacedStepsPerSecond, so that N rooms together stay at or under the
// app's rate without any shared state on the delivery path. It runs on
// the RPC's goroutine like the unpaced fan-out, inside the call's
// deadline: when the next chunk would fall past it the room stops and
// answers DeadlineExceeded, and center's sweep resends later; the seen
// bits make the resend continue with the connections not yet given.
//
// Paced deliveries are added to the broadcast's reached counter as they
// go, which the progress loop reports to saver every progressInterval, so
// GET /v1/messages/{id} shows a long paced broadcast advancing and a
// stopped one keeps what it reached.
const (
	// pacedStepsPerSecond is how often a paced fan-out wakes to send a
	// chunk: small enough chunks that the rate holds within a second.
	pacedStepsPerSecond = 20
	// pacedMaxChunk bounds one chunk (rates above 10,240/s wake more
	// often instead).
	pacedMaxChunk = 512
	// pacedStopMargin is kept free before the call's deadline so the
	// answer still reaches center.
	pacedStopMargin = 500 * time.Millisecond
	// maxPacedFanOuts bounds the paced fan-outs running at once. They
	// mostly sleep, so they do not take the unpaced broadcastFanOuts
	// slots (four slow broadcasts would hold up every other app's); past
	// the bound a call is refused and left to center's sweep.
	maxPacedFanOuts = 64
)

func pacedChunk(rate int) int {
	return min(max(rate/pacedStepsPerSecond, 1), pacedMaxChunk)
}

// targets copies the authenticated sessions of app, shard by shard.
func (bc *broadcaster) targets(app string) []*session {
	var out []*session
	h := bc.r.hub
	for i := range h.byID {
		is := &h.byID[i]
		is.mu.RLock()
		for _, s := range is.m {
			if s.isAuthed() && s.key.app == app {
				out = append(out, s)
			}
		}
		is.mu.RUnlock()
	}
	return out
}

// errPacedDeadline says a paced fan-out stopped before its end to answer
// within the call's deadline.
var errPacedDeadline = errors.New("room: paced broadcast fan-out stopped at the call's deadline")

// fanOutPaced gives e to every authenticated connection of its app once,
// at most rate connections per second. It returns how many it reached
// (already added to e.reached for the progress report) and how many were
// left to their login catch-up; err is errPacedDeadline or ctx's error
// when it stopped before the end.
func (bc *broadcaster) fanOutPaced(ctx context.Context, e *bcEntry, rate int) (reached, deferred uint64, err error) {
	list := bc.targets(e.b.GetApp())
	seq, chunk := e.b.GetSeq(), pacedChunk(rate)
	deadline, hasDeadline := ctx.Deadline()
	start := time.Now()
	for i := 0; i < len(list); {
		var n uint64
		for ; i < len(list) && n < uint64(chunk); i++ {
			s := list[i]
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
		if n > 0 {
			reached += n
			e.reached.Add(n)
			bc.r.m.pushes.Add(float64(n))
		}
		if i == len(list) {
			break
		}
		// The next chunk is due when the deliveries so far fit the rate.
		due := start.Add(time.Duration(float64(reached) / float64(rate) * float64(time.Second)))
		if hasDeadline && due.After(deadline.Add(-pacedStopMargin)) {
			return reached, deferred, errPacedDeadline
		}
		if exp := e.b.GetExpiresMs(); exp > 0 && due.UnixMilli() >= exp {
			// Expired before the rest could go: nothing more is owed.
			return reached, deferred, nil
		}
		if err := sleepUntil(ctx, due); err != nil {
			return reached, deferred, err
		}
	}
	return reached, deferred, nil
}

// sleepUntil waits until t or ctx's end.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startPaced marks a paced fan-out of id as running. It refuses one when
// the same broadcast already runs (a sweep resend overtaking a long paced
// call) and when maxPacedFanOuts run.
func (bc *broadcaster) startPaced(id uint64) error {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.pacing == nil {
		bc.pacing = map[uint64]struct{}{}
	}
	if _, ok := bc.pacing[id]; ok {
		return status.Errorf(codes.Aborted, "room: paced fan-out of broadcast %d is already running", id)
	}
	if len(bc.pacing) >= maxPacedFanOuts {
		return status.Errorf(codes.ResourceExhausted, "room: %d paced broadcast fan-outs running; broadcast %d left to the resend", maxPacedFanOuts, id)
	}
	bc.pacing[id] = struct{}{}
	return nil
}

// broadcastPaced runs a paced fan-out for the RPC and maps its stop to a
// status: a stopped fan-out is not done, so center leaves it to the sweep.
func (bc *broadcaster) broadcastPaced(ctx context.Context, e *bcEntry, rate int) (*internalpb.RoomBroadcastReply, error) {
	id := e.b.GetId()
	if err := bc.startPaced(id); err != nil {
		return nil, err
	}
	defer bc.endPaced(id)
	reached, deferred, err := bc.fanOutPaced(ctx, e, rate)
	switch {
	case errors.Is(err, errPacedDeadline):
		return nil, status.Errorf(codes.DeadlineExceeded, "room: paced broadcast %d: reached %d at %d/s before the call's deadline; the rest on resend", id, reached, rate)
	case err != nil:
		return nil, status.FromContextError(err).Err()
	}
	return &internalpb.RoomBroadcastReply{Reported: reached, Deferred: deferred}, nil
}

func (bc *broadcaster) endPaced(id uint64) {
	bc.mu.Lock()
	delete(bc.pacing, id)
	bc.mu.Unlock()
}

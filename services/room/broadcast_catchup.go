package main

import (
	"context"
	"time"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Login catch-up: a client reports the last broadcast seq it handled in
// AUTH; the room reads the app's unexpired broadcasts after it from saver
// (at most catchUpLimit, the newest, oldest first) and gives them to the
// connection in order. Live broadcasts skip the connection meanwhile (they
// are stored before they go out, so the read finds them); once the read is
// delivered live ones flow again and a last read picks up those that went
// out in between. The seen bits keep each one to a single copy.
const (
	catchUpWorkers = 64
	catchUpLimit   = 100
	// catchUpFinalTries bounds the last read, which runs after live
	// broadcasts resumed: a failure there would lose the ones skipped.
	catchUpFinalTries = 3
	catchUpFinalPause = 200 * time.Millisecond
)

// defaultCatchUpRetries are the waits before each retry of a failed first
// read; after the last, live broadcasts resume without the catch-up.
func defaultCatchUpRetries() []time.Duration {
	return []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}
}

// startCatchUp queues s's catch-up from seq last; it runs on the reader
// right after AUTH_REPLY, so it never blocks: a full queue or pool is
// retried later. Its reads go through the batcher
// (broadcast_catchup_batch.go), or one call each from catchUp below when
// saver has no CatchUpBatch.
func (bc *broadcaster) startCatchUp(s *session, last uint64, loginMs int64) {
	bc.submitCatchUp(s, last, loginMs, 0)
}

func (bc *broadcaster) submitCatchUp(s *session, last uint64, loginMs int64, attempt int) {
	if !bc.batch.single.Load() {
		bc.batch.add(catchUpReq{s: s, after: last, loginMs: loginMs, attempt: attempt})
		return
	}
	if err := bc.catchUps.Submit(func() { bc.catchUp(s, last, loginMs, attempt) }); err != nil {
		bc.r.m.poolRejected.WithLabelValues("catchup").Inc()
		bc.retryCatchUp(s, last, loginMs, attempt)
	}
}

func (bc *broadcaster) retryCatchUp(s *session, last uint64, loginMs int64, attempt int) {
	if attempt >= len(bc.retryDelays) {
		bc.r.log.Warn("room: broadcast catch-up given up; live broadcasts resume", "conn", s.id, "app", s.key.app)
		bc.seen.caughtUp(s)
		bc.r.m.catchUps.WithLabelValues("given_up").Inc()
		return
	}
	bc.r.later.After(bc.retryDelays[attempt], func() {
		if !s.has(flagClosed) {
			bc.submitCatchUp(s, last, loginMs, attempt+1)
		}
	})
}

func (bc *broadcaster) catchUp(s *session, last uint64, loginMs int64, attempt int) {
	if s.has(flagClosed) {
		return
	}
	list, err := bc.read(s.key, last, loginMs)
	if err != nil {
		bc.r.log.Debug("room: broadcast catch-up read failed", "conn", s.id, "err", err)
		bc.retryCatchUp(s, last, loginMs, attempt)
		return
	}
	last = bc.give(s, list, last)
	bc.seen.caughtUp(s)
	bc.finalReads(s, last, loginMs)
}

// finalReads is the last read of a catch-up, after live broadcasts
// resumed.
func (bc *broadcaster) finalReads(s *session, last uint64, loginMs int64) {
	var err error
	for try := 1; try <= catchUpFinalTries; try++ {
		var list []*internalpb.Broadcast
		list, err = bc.read(s.key, last, loginMs)
		if err == nil {
			bc.give(s, list, last)
			bc.r.m.catchUps.WithLabelValues("ok").Inc()
			return
		}
		time.Sleep(catchUpFinalPause)
	}
	bc.r.log.Warn("room: last broadcast catch-up read failed", "conn", s.id, "app", s.key.app, "err", err)
	bc.r.m.catchUps.WithLabelValues("given_up").Inc()
}

// read asks saver for the broadcasts after seq that k's user gets: the
// app-wide ones and those of its tags.
func (bc *broadcaster) read(k sessionKey, after uint64, loginMs int64) ([]*internalpb.Broadcast, error) {
	ctx, cancel := context.WithTimeout(context.Background(), grpcconn.DefaultCallTimeout)
	defer cancel()
	rep, err := bc.r.saver.CatchUp(ctx, catchUpRequest(k, after, loginMs))
	if err != nil {
		bc.r.m.peerErrors.WithLabelValues("Saver.CatchUp").Inc()
		return nil, err
	}
	return rep.GetBroadcasts(), nil
}

// give sends list (ascending seq) to s, each at most once, and returns the
// highest seq it went through.
func (bc *broadcaster) give(s *session, list []*internalpb.Broadcast, last uint64) uint64 {
	now := time.Now().UnixMilli()
	for _, b := range list {
		// Saver picked the tag broadcasts of the user's tags.
		if b.GetApp() != s.key.app {
			continue
		}
		last = max(last, b.GetSeq())
		if b.GetExpiresMs() > 0 && b.GetExpiresMs() <= now {
			continue
		}
		e, err := bc.track(b)
		if err != nil {
			bc.r.log.Warn("room: broadcast not sendable", "err", err)
			continue
		}
		if send, _ := bc.seen.claim(s, b.GetSeq(), false); !send {
			continue
		}
		if s.send(protocol.OpPush, e.frame) != nil {
			return last
		}
		e.reached.Add(1)
		bc.r.m.pushes.Inc()
	}
	return last
}

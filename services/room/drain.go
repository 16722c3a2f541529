package main

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Shutdown budget: the whole drain fits in about ten seconds.
const (
	// drainConnsWait: clients told to go get this long to close before the
	// rest are cut.
	drainConnsWait = 5 * time.Second
	drainAbortWait = 500 * time.Millisecond
	drainGRPCWait  = time.Second
	drainFlushWait = 2 * time.Second
	drainDeregWait = time.Second
	drainPoll      = 20 * time.Millisecond
	// drainEngineWait bounds stopping the engine's loops (gnet polls for
	// its shutdown every 500 ms).
	drainEngineWait = 2 * time.Second
	// Redirected clients reconnect after a random back-off in this range,
	// so a drained room's clients do not hit the dispatcher all at once.
	redirectBackoffMin = 100
	redirectBackoffMax = 1000
)

// redirectFrame tells a client to reconnect through the dispatcher.
func redirectFrame() []byte {
	b, _ := protocol.AppendMessage(nil, protocol.OpRedirect, 0, &clientpb.Redirect{
		BackoffMs: uint32(redirectBackoffMin + rand.IntN(redirectBackoffMax-redirectBackoffMin+1)),
		Reason:    "server shutting down",
	})
	return b
}

// shutdown drains the room: unpublish, stop accepting, redirect every
// client, delete their sessions at register, deregister.
func (s *server) shutdown() {
	start := time.Now()
	// A drain requested through etcd may be pacing: this one takes over
	// from where it got (drain_mark.go).
	s.drain.takeOver()
	s.reg.Update(func(in *discovery.Instance) { in.Draining = true })
	s.r.draining.Store(true)
	// Pending pulls and uplinks for connections about to be redirected
	// would only hold the drain up.
	s.r.endConnCtx()
	_ = s.eng.Close()

	// The same paced path as a requested drain (drain_pace.go), its rate
	// raised so the last client is told within drainTermWindow.
	rate := termRate(s.cfg.drain.rate, s.r.conns.Load())
	redirected := s.r.redirectPaced(context.Background(), func() int { return rate }, redirectReasonShutdown, s.drain.sent)
	if !s.waitConns(max(drainConnsWait-time.Since(start), drainTailWait)) {
		s.r.hub.Range(func(ss *session) { ss.c.Abort() })
		s.waitConns(drainAbortWait)
	}

	s.stopEngine()

	stopped := make(chan struct{})
	go func() { s.gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(drainGRPCWait):
		s.gs.Stop()
	}

	close(s.stop)
	<-s.done
	fctx, cancel := context.WithTimeout(context.Background(), drainFlushWait)
	if err := s.r.sessions.Close(fctx); err != nil {
		s.log.Warn("room: session deletes not flushed before the deadline", "err", err)
	}
	if err := s.r.reports.Close(fctx); err != nil {
		s.log.Warn("room: reports not flushed before the deadline", "err", err)
	}
	if err := s.r.events.Close(fctx); err != nil {
		s.log.Warn("room: online/offline events not flushed before the deadline", "err", err)
	}
	cancel()
	dctx, cancel := context.WithTimeout(context.Background(), drainDeregWait)
	if err := s.reg.Close(dctx); err != nil {
		s.log.Warn("room: deregister failed", "err", err)
	}
	cancel()
	s.adm.Close()
	s.r.close()
	s.log.Info("room drained", "redirected", redirected, "left", s.r.conns.Load(), "took", time.Since(start))
}

// waitConns waits until no connection is open, up to d.
func (s *server) waitConns(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for s.r.conns.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(drainPoll)
	}
	return true
}

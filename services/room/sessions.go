package main

import (
	"context"
	"time"

	"github.com/pushgw/pushgw/pkg/grpcconn"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Register call policy.
const (
	registerAttempts = 3
	registerBackoff  = 50 * time.Millisecond
	// refreshBatch is the most sessions per Refresh call.
	refreshBatch = 500
	// registerBatchDelay is 0: register's batcher is eager. Every login's
	// AUTH_REPLY waits for its put, so a gather window is added to every
	// login's wait (4 logins in flight: connect p50 10-11 ms with 5 ms,
	// 6 ms without). Eager, a login that finds the flusher idle is put at
	// once, and those arriving during a put go together in the next:
	// batches grow with load (up to defaultBatchSize) as they did with the
	// window, so a burst's puts still go in batches.
	registerBatchDelay = 0
)

// regOp is one queued change at register.
type regOp struct {
	del bool
	s   *internalpb.Session
	// then runs once the put's batch was sent (or given up on).
	then func()
}

// sessionSync keeps register in step with this room: logins and closes go
// through one ordered batcher; a loop refreshes TTLs of live sessions.
type sessionSync struct {
	r *room
	b *batcher[regOp]
	// retry gives failed puts their second chances (putretry.go).
	retry *putRetrier

	stop chan struct{}
	done chan struct{}
}

func newSessionSync(r *room) *sessionSync {
	ss := &sessionSync{r: r, stop: make(chan struct{}), done: make(chan struct{})}
	drop := r.m.batchDropped.WithLabelValues("register")
	ss.b = newBatcher(defaultBatchSize, registerBatchDelay, defaultBatchQueue, ss.flush, drop.Inc)
	ss.retry = newPutRetrier(ss)
	go ss.refreshLoop()
	return ss
}

// Put queues a new login.
func (ss *sessionSync) Put(s *internalpb.Session) { ss.b.Add(regOp{s: s}) }

// PutThen queues a new login and runs then after register has it. A login
// pulls its pending messages only then: a message stored after that pull
// is looked up by center after the session is visible, so it is pushed
// live; stored before, the pull finds it. Pulling before the put lands
// would leave a window in which a message is in neither path.
func (ss *sessionSync) PutThen(s *internalpb.Session, then func()) {
	if !ss.b.Add(regOp{s: s, then: then}) {
		then() // shed: register will learn of it at the next refresh
	}
}

// Delete queues the removal of a closed session.
func (ss *sessionSync) Delete(s *internalpb.Session) { ss.b.Add(regOp{del: true, s: s}) }

// flush sends one batch: puts first, then deletes. A session's delete is
// always queued after its put, so within a batch this keeps their order;
// across batches the single flusher does.
func (ss *sessionSync) flush(ops []regOp) {
	var puts, dels []*internalpb.Session
	for _, op := range ops {
		if op.del {
			dels = append(dels, op.s)
		} else {
			puts = append(puts, op.s)
		}
	}
	if len(puts) > 0 {
		err := ss.call("Register.Put", func(ctx context.Context) error {
			_, err := ss.r.register.Put(ctx, &internalpb.PutSessionsRequest{Sessions: puts})
			return err
		}, len(puts))
		if err != nil {
			ss.retry.add(puts)
		}
		for _, op := range ops {
			if op.then != nil {
				op.then()
			}
		}
	}
	if len(dels) > 0 {
		ss.call("Register.Delete", func(ctx context.Context) error {
			_, err := ss.r.register.Delete(ctx, &internalpb.DeleteSessionsRequest{Sessions: dels})
			return err
		}, len(dels))
	}
}

func (ss *sessionSync) call(method string, f func(context.Context) error, n int) error {
	err := retry(registerAttempts, registerBackoff, ss.r.life.Done(), func() error {
		ctx, cancel := context.WithTimeout(ss.r.life, grpcconn.DefaultCallTimeout)
		defer cancel()
		err := f(ctx)
		if err != nil {
			ss.r.m.peerErrors.WithLabelValues(method).Inc()
		}
		return err
	})
	if err != nil {
		ss.r.m.batchFailed.WithLabelValues("register").Inc()
		ss.r.log.Warn("room: register batch failed", "method", method, "sessions", n, "err", err)
	}
	return err
}

// refreshLoop refreshes every -session-refresh, and at once when
// register's epoch says its Redis lost the sessions (epoch.go). One
// goroutine runs both, so two refreshes never overlap.
func (ss *sessionSync) refreshLoop() {
	defer close(ss.done)
	t := time.NewTicker(ss.r.cfg.sessionRefresh)
	defer t.Stop()
	poll := time.NewTicker(epochPoll)
	defer poll.Stop()
	// Learn the epoch before the first login's put, so a loss at any
	// time after is seen as a change.
	var epoch epochWatch
	epoch.changed(ss.r.life, ss.r.register)
	for {
		select {
		case <-ss.stop:
			return
		case <-t.C:
			ss.refreshAll()
		case <-poll.C:
			if epoch.changed(ss.r.life, ss.r.register) {
				ss.r.m.epochChanges.Inc()
				ss.r.log.Info("room: register's session store lost its data; putting sessions back now")
				ss.refreshAll()
			}
		}
	}
}

// refreshAll extends the TTL of every live session in batches, and re-puts
// the ones register no longer knows (e.g. Redis lost its data).
func (ss *sessionSync) refreshAll() {
	batch := make([]*internalpb.Session, 0, refreshBatch)
	ss.r.hub.Range(func(s *session) {
		if !s.isAuthed() {
			return
		}
		batch = append(batch, s.regSession())
		if len(batch) == refreshBatch {
			_ = ss.refresh(batch)
			batch = make([]*internalpb.Session, 0, refreshBatch)
		}
	})
	if len(batch) > 0 {
		_ = ss.refresh(batch)
	}
}

// refresh extends the TTL of sessions at register and puts back those it
// does not know, if their connection is still open here.
func (ss *sessionSync) refresh(sessions []*internalpb.Session) error {
	ctx, cancel := context.WithTimeout(ss.r.life, grpcconn.DefaultCallTimeout)
	rep, err := ss.r.register.Refresh(ctx, &internalpb.RefreshSessionsRequest{Sessions: sessions})
	cancel()
	if err != nil {
		ss.r.m.peerErrors.WithLabelValues("Register.Refresh").Inc()
		ss.r.log.Warn("room: session refresh failed", "err", err)
		return err
	}
	for _, m := range rep.GetMissing() {
		// Only sessions still open here: a missing one that closed
		// meanwhile must not come back.
		if s, ok := ss.r.hub.Get(m.GetConnId()); ok && s.isAuthed() {
			if _, parked := s.c.(*parkConn); parked {
				// Its client is away and may have logged in elsewhere
				// since: putting the session back (last write wins) could
				// hide that newer login, and pushes would queue here for
				// the rest of the window. It ends; a resume becomes a
				// full login.
				s.c.CloseWith(nil)
				continue
			}
			// While register did not know the session, center found
			// nobody to push to: pull what was stored meanwhile once the
			// session is back.
			ss.PutThen(s.regSession(), func() { ss.r.requestPull(s) })
		}
	}
	return nil
}

// Close stops refreshing and flushes queued changes within ctx.
func (ss *sessionSync) Close(ctx context.Context) error {
	close(ss.stop)
	<-ss.done
	ss.retry.close()
	return ss.b.Close(ctx)
}

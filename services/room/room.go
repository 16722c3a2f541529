package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/ants/v2"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Worker pools: calls to saver and coordinator made on behalf of one
// connection run here, never in a goroutine of their own.
const (
	pendingWorkers = 1024
	uplinkWorkers  = 1024
)

// room is the session logic: it implements handler for an engine and the
// Room gRPC service, and owns the local index and the batches to peers.
type room struct {
	cfg      config
	instance string
	log      *slog.Logger
	m        *metrics
	secretOf func(app string) ([]byte, bool)

	register    internalpb.RegisterClient
	saver       internalpb.SaverClient
	coordinator internalpb.CoordinatorClient

	hub *hub
	// authMsgs recycles the *clientpb.Auth each AUTH is decoded into
	// (auth.go): one allocation less per login.
	authMsgs sync.Pool
	// apps interns app names, so sessions of one app share one string.
	apps  *interner
	wheel *timingWheel[*session]
	// later runs the per-connection one-shot waits (later.go).
	later    *laterQueue
	sessions *sessionSync
	reports  *reporter
	events   *eventReporter // online/offline callbacks (events.go); nil: none
	bc       *broadcaster
	flash    *flash
	pending  *ants.Pool
	uplinks  *ants.Pool
	// pulls batches pending pulls into Saver.PendingBatch calls.
	pulls *puller

	// life is cancelled when the room closes, connCtx when it starts
	// draining: background calls for connections use connCtx, batches to
	// peers life (the drain still flushes their deletes).
	life       context.Context
	endLife    context.CancelFunc
	connCtx    context.Context
	endConnCtx context.CancelFunc

	nextID atomic.Uint64
	conns  atomic.Int64
	// preAuth counts open connections that have not authenticated.
	preAuth  atomic.Int64
	adm      *admission
	engStats engineStats
	draining atomic.Bool

	tooMany        []byte
	tooManyPreAuth []byte
	connectLimited []byte
	// frameRate is the per-connection inbound frame limit (immutable).
	frameRate frameRate
	// multi serves BIND and login policies (policy.go); nil without app
	// configs (then BIND answers UNAVAILABLE and every app is multi).
	multi *multiApp
}

type roomDeps struct {
	log         *slog.Logger
	metrics     *metrics
	secretOf    func(app string) ([]byte, bool)
	register    internalpb.RegisterClient
	saver       internalpb.SaverClient
	coordinator internalpb.CoordinatorClient
	// events and subscribes feed online/offline callbacks (events.go);
	// either nil turns them off.
	events     internalpb.SaverEventsClient
	subscribes func(app, event string) bool
}

func newRoom(cfg config, d roomDeps) (*room, error) {
	r := &room{
		cfg: cfg, instance: cfg.common.Instance, log: d.log, m: d.metrics, secretOf: d.secretOf,
		register: d.register, saver: d.saver, coordinator: d.coordinator,
		hub:     newHub(),
		apps:    newInterner(maxInternedApps),
		tooMany: protocol.ErrorFrame(nil, 0, protocol.CodeTooManyConnections, "room is full"),
		tooManyPreAuth: protocol.ErrorFrame(nil, 0, protocol.CodeTooManyConnections,
			"too many connections waiting to authenticate; try the next endpoint"),
		connectLimited: protocol.ErrorFrame(nil, 0, protocol.CodeRateLimited,
			"too many new connections from your address; back off, then retry"),
		adm:       newAdmission(),
		frameRate: cfg.frameRate(),
	}
	// Seeding from the clock keeps connection ids of a restarted instance
	// (same -instance) above the old ones, so a late Delete of an old
	// session can never match a new one at register.
	r.nextID.Store(uint64(time.Now().UnixNano()))
	r.life, r.endLife = context.WithCancel(context.Background())
	r.connCtx, r.endConnCtx = context.WithCancel(r.life)
	var err error
	// Both pools refuse at once when full: their tasks are submitted from
	// event loops and from register's single flusher, which must not wait.
	if r.pending, err = ants.NewPool(pendingWorkers, ants.WithNonblocking(true)); err != nil {
		r.endLife()
		return nil, fmt.Errorf("room: pending pool: %w", err)
	}
	if r.uplinks, err = ants.NewPool(uplinkWorkers, ants.WithNonblocking(true)); err != nil {
		r.pending.Release()
		r.endLife()
		return nil, fmt.Errorf("room: uplink pool: %w", err)
	}
	span := max(cfg.authTimeout, cfg.liveTimeout())
	r.wheel = newTimingWheel(wheelTick(cfg.heartbeat), span, r.expired)
	r.later = newLaterQueue(laterTick, laterSlots)
	if r.bc, err = newBroadcaster(r); err != nil {
		r.pending.Release()
		r.uplinks.Release()
		return nil, err
	}
	r.pulls = newPuller(r, pullBatchSize, pullBatchDelay)
	r.sessions = newSessionSync(r)
	r.flash = newFlash(r)
	r.reports = newReporter(r)
	r.events = newEventReporter(r, d.events, d.subscribes)
	r.wheel.Start()
	r.later.Start()
	go r.trimLoop()
	return r, nil
}

func (r *room) OnOpen(c conn) handle {
	if ap := c.RemoteAddr(); ap.IsValid() {
		switch r.adm.check(ap.Addr(), monoNanos(time.Now())) {
		case deniedIP:
			// Nothing is said to a denied address.
			r.m.admissionRefused.WithLabelValues("denied").Inc()
			c.CloseWith(nil)
			return nil
		case rateLimitedIP:
			r.m.admissionRefused.WithLabelValues("rate").Inc()
			r.refuse(c, r.connectLimited, protocol.CodeRateLimited)
			return nil
		}
	}
	if n := r.conns.Add(1); n > int64(r.cfg.maxConns) {
		r.conns.Add(-1)
		r.refuse(c, r.tooMany, protocol.CodeTooManyConnections)
		return nil
	}
	if n := r.preAuth.Add(1); n > int64(r.cfg.maxPreAuth) {
		r.preAuth.Add(-1)
		r.conns.Add(-1)
		r.m.admissionRefused.WithLabelValues("preauth").Inc()
		r.refuse(c, r.tooManyPreAuth, protocol.CodeTooManyConnections)
		return nil
	}
	r.m.conns.Inc()
	s := &session{r: r, c: c, id: r.nextID.Add(1)}
	r.hub.AddConn(s)
	r.wheel.Add(&s.timer, s, r.cfg.authTimeout)
	// Checked after indexing: either drain's sweep sees this connection or
	// this check sees the drain.
	if r.draining.Load() {
		c.CloseWith(redirectFrame())
	}
	return s
}

// refuse closes a new connection with an ERROR.
func (r *room) refuse(c conn, frame []byte, code protocol.Code) {
	c.CloseWith(frame)
	r.m.frameOut(protocol.OpError)
	r.m.closes.WithLabelValues(code.String()).Inc()
}

func (r *room) OnFrame(h handle, f protocol.Frame) {
	s := h.(*session)
	r.m.frameIn(f.Op)
	// Checked first, so a flood costs one clock read per frame and nothing
	// else: no decode, no reply, no call to a peer.
	now := monoNanos(time.Now())
	if !r.frameRate.allow(&s.limit, now) {
		r.m.rateLimited.Inc()
		s.fail(f.Seq, protocol.CodeRateLimited, fmt.Sprintf("more than %d frames in a burst or %d frames/s on average", r.cfg.frameBurst, r.cfg.maxFrameRate))
		return
	}
	if !s.isAuthed() {
		if f.Op != protocol.OpAuth {
			s.fail(f.Seq, protocol.CodeAuthRequired, "the first frame must be AUTH")
			return
		}
		r.handleAuth(s, f)
		return
	}
	// Any frame proves the client alive.
	s.timer.TouchAt(now, r.cfg.liveTimeout())
	switch f.Op {
	case protocol.OpPing, protocol.OpPong:
		if len(f.Body) > 0 {
			s.fail(f.Seq, protocol.CodeBadBody, fmt.Sprintf("%s carries no body", f.Op))
			return
		}
		// An idle session sheds what it kept of its last acks.
		s.pending.expireAcked(r.reports.flushes.Load())
		if f.Op == protocol.OpPong {
			return // liveness only
		}
		s.send(protocol.OpPong, protocol.AppendFrame(make([]byte, 0, protocol.HeaderSize), protocol.OpPong, 0, f.Seq, nil))
	case protocol.OpAck:
		r.handleAck(s, f)
	case protocol.OpUplink:
		r.handleUplink(s, f)
	case protocol.OpBind:
		r.handleBind(s, f)
	case protocol.OpUnbind:
		r.handleUnbind(s, f)
	case protocol.OpAuth:
		s.fail(f.Seq, protocol.CodeAlreadyAuthed, "already authenticated")
	default:
		s.fail(f.Seq, protocol.CodeUnknownOp, fmt.Sprintf("%s is a server-to-client operation", f.Op))
	}
}

func (r *room) OnFrameError(h handle, seq uint32, err error) {
	h.(*session).fail(seq, protocol.CodeOf(err), err.Error())
}

func (r *room) OnClose(h handle) {
	s := h.(*session)
	s.set(flagClosed)
	r.wheel.Remove(&s.timer)
	// A dropped session may be kept for a flash reconnect (resume.go);
	// its register entry then stays.
	parked := s.isAuthed() && r.flash.park(s)
	r.hub.Remove(s)
	r.closeBound(s)
	r.conns.Add(-1)
	r.m.conns.Dec()
	if parked {
		return
	}
	if s.isAuthed() {
		r.sessions.Delete(s.regSession())
		r.events.offline(s)
	} else {
		r.preAuth.Add(-1)
	}
}

// expired runs on the wheel's goroutine for a connection whose deadline
// passed: no AUTH in time, or silent for too long.
func (r *room) expired(s *session) {
	if s.isAuthed() {
		r.m.hbTimeouts.Inc()
		s.setCloseReason(closeTimedOut)
		s.fail(0, protocol.CodeHeartbeatTimeout, "no frame within the heartbeat deadline")
		return
	}
	r.m.authTimeouts.Inc()
	s.fail(0, protocol.CodeAuthTimeout, "no AUTH within the deadline")
}

// close stops the room's own machinery (after the connections are gone).
func (r *room) close() {
	r.endLife()
	r.wheel.Stop()
	r.later.Stop()
	r.bc.close()
	r.pulls.close()
	r.pending.Release()
	r.uplinks.Release()
}

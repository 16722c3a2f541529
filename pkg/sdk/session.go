package sdk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

var (
	errStopped = errors.New("sdk: connection closing")
	// errSilent ends a session whose server stopped answering (PINGs
	// included): the process may be hung rather than dead, and its port
	// still accepts connections, so it is reported as failed to the
	// dispatcher instead of being dialled first again.
	errSilent = errors.New("server silent")
)

// session is one authenticated connection. Its reader goroutine handles
// inbound frames (and runs the Handler); its writer goroutine owns every
// write after AUTH: queued frames, PINGs and batched ACKs.
type session struct {
	c         *Client
	ep        string
	conn      net.Conn
	r         *protocol.Reader
	pingEvery time.Duration
	deadAfter time.Duration

	out  chan []byte
	done chan struct{}
	acks acker

	// readMu orders the reader's deadline refresh against stopReading, so a
	// stop is never undone by the next refresh.
	readMu   sync.Mutex
	stopping bool

	waitMu  sync.Mutex
	waiters map[uint32]chan *clientpb.UplinkReply
	// replies await BIND_REPLY and UNBIND_REPLY (bind.go).
	replies replies
}

// runSession connects to ep and serves the connection until it ends.
// established reports whether AUTH succeeded.
// resumeOnly makes the AUTH a resume or nothing (Auth.resume_only), with
// the shorter resumeAuthTimeout.
func (c *Client) runSession(ctx context.Context, ep string, resumeOnly bool) (established bool, err error) {
	tok, err := c.token(ctx)
	if err != nil {
		return false, err
	}
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", ep)
	if err != nil {
		return false, fmt.Errorf("sdk: dial %s: %w", ep, err)
	}
	r := protocol.NewReader(bufio.NewReaderSize(conn, 4096), c.cfg.MaxFrame)
	reply, err := c.authenticate(ctx, conn, r, tok, resumeOnly)
	if err != nil {
		conn.Close()
		return false, fmt.Errorf("sdk: auth at %s: %w", ep, err)
	}

	hb := time.Duration(reply.HeartbeatSeconds) * time.Second
	if hb <= 0 {
		hb = DefaultHeartbeat
	}
	s := &session{
		c: c, ep: ep, conn: conn, r: r,
		pingEvery: max(hb/2, minPingPeriod),
		// PINGs go every hb/2, so this is two unanswered in a row: a hung
		// room is left within 1.5 heartbeats rather than 2.5, and a PONG
		// may still be a whole heartbeat late before that happens.
		deadAfter: hb + min(hb/2, deadMarginMax),
		out:       make(chan []byte, sendQueueSize),
		done:      make(chan struct{}),
		waiters:   make(map[uint32]chan *clientpb.UplinkReply),
	}
	s.acks.init()
	c.log.Info("sdk: connected", "endpoint", ep, "session", reply.SessionId, "heartbeat", hb, "resumed", reply.Resumed)
	c.setResumeToken(reply.ResumeToken)
	// The apps to bind again are the ones bound before this connection,
	// taken before it becomes current: an app Bind()s on it once it is
	// current must not be sent a second BIND by the rebind below.
	rebinds := c.binds.snapshot()
	c.setCurrent(s)
	c.stats.connects.Add(1)
	if reply.Resumed {
		c.stats.resumed.Add(1)
	}
	c.notify(StateConnected, ep)
	defer c.notify(StateDisconnected, ep)
	defer c.setCurrent(nil)
	// Bound apps are bound again on every connection, but for those a
	// resumed login kept (AuthReply.resumed_apps); the replies come
	// through the reader, so this cannot run on it.
	go s.rebind(ctx, rebinds, reply.GetResumedApps())
	return true, s.serve(ctx)
}

func (c *Client) notify(st State, ep string) {
	if c.cfg.OnState != nil {
		c.cfg.OnState(st, ep)
	}
}

// authenticate sends AUTH and waits for the answer within authTimeout
// (resumeAuthTimeout for a resume-only AUTH).
func (c *Client) authenticate(ctx context.Context, conn net.Conn, r *protocol.Reader, tok string, resumeOnly bool) (*clientpb.AuthReply, error) {
	wait := authTimeout
	if resumeOnly {
		wait = resumeAuthTimeout
	}
	deadline := time.Now().Add(wait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	last, gaps := c.bcast.auth()
	frame, err := protocol.AppendMessage(nil, protocol.OpAuth, c.nextSeq(), &clientpb.Auth{
		Token: tok, Device: c.cfg.Device, Platform: c.cfg.Platform, SdkVersion: Version,
		LastBroadcastSeq: last, BroadcastGaps: gaps, ResumeToken: c.resumeToken(), ResumeOnly: resumeOnly,
	})
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(frame); err != nil {
		return nil, fmt.Errorf("write AUTH: %w", err)
	}
	for {
		f, err := r.Read()
		if err != nil {
			return nil, fmt.Errorf("read AUTH_REPLY: %w", err)
		}
		m, err := protocol.DecodeBody(f)
		if err != nil {
			return nil, err
		}
		switch b := m.(type) {
		case *clientpb.AuthReply:
			_ = conn.SetDeadline(time.Time{})
			return b, nil
		case *clientpb.Error:
			return nil, &ServerError{Op: f.Op, Code: protocol.Code(b.Code), Message: b.Message}
		case *clientpb.Kick:
			return nil, &ServerError{Op: f.Op, Code: protocol.Code(b.Code), Message: b.Reason}
		case *clientpb.Redirect:
			return nil, &redirectError{endpoints: b.Endpoints, backoffMs: b.BackoffMs, reason: b.Reason}
		}
		// Anything else before AUTH_REPLY is ignored rather than fatal, so a
		// server may add informational frames later.
	}
}

// serve runs the reader and writer until the connection ends and returns why.
func (s *session) serve(ctx context.Context) error {
	readErr := make(chan error, 1)
	go func() { readErr <- s.readLoop(ctx) }()
	stopWriter := make(chan struct{})
	writeErr := make(chan error, 1)
	go func() { writeErr <- s.writeLoop(stopWriter) }()

	var err error
	writerDone := false
	select {
	case err = <-readErr:
	case err = <-writeErr:
		writerDone = true
		s.stopReading()
		<-readErr
	case <-ctx.Done():
		err = ctx.Err()
		// Stop reading, but let a Handler that is running finish (its ctx is
		// cancelled) so its ACK makes the final flush.
		s.stopReading()
		t := time.NewTimer(time.Until(s.c.flushDeadline()))
		select {
		case <-readErr:
		case <-t.C:
		}
		t.Stop()
	}
	close(s.done)
	if !writerDone {
		close(stopWriter)
		<-writeErr
	}
	_ = s.conn.Close()
	return err
}

func (s *session) readLoop(ctx context.Context) error {
	for {
		if !s.armRead() {
			return errStopped
		}
		f, err := s.r.Read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				return fmt.Errorf("sdk: nothing received from %s for %s: %w: %w", s.ep, s.deadAfter, errSilent, err)
			}
			return fmt.Errorf("sdk: read from %s: %w", s.ep, err)
		}
		if f.Op == protocol.OpPong {
			continue
		}
		m, err := protocol.DecodeBody(f)
		if err != nil {
			return fmt.Errorf("sdk: from %s: %w", s.ep, err)
		}
		switch b := m.(type) {
		case nil:
			if f.Op == protocol.OpPing {
				s.trySend(protocol.AppendFrame(nil, protocol.OpPong, 0, f.Seq, nil))
			}
		case *clientpb.Push:
			s.handlePush(ctx, b)
		case *clientpb.UplinkReply:
			s.deliver(f.Seq, b)
		case *clientpb.BindReply, *clientpb.UnbindReply:
			s.deliverReply(f.Seq, b)
		case *clientpb.Unbind:
			s.serverUnbind(b)
		case *clientpb.Kick:
			return &ServerError{Op: f.Op, Code: protocol.Code(b.Code), Message: b.Reason}
		case *clientpb.Redirect:
			return &redirectError{endpoints: b.Endpoints, backoffMs: b.BackoffMs, reason: b.Reason}
		case *clientpb.Error:
			return &ServerError{Op: f.Op, Code: protocol.Code(b.Code), Message: b.Message}
		default:
			s.c.log.Debug("sdk: ignoring frame", "op", f.Op)
		}
	}
}

func (s *session) armRead() bool {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.stopping {
		return false
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(s.deadAfter))
	return true
}

func (s *session) stopReading() {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.stopping = true
	_ = s.conn.SetReadDeadline(time.Unix(1, 0))
}

func (s *session) handlePush(ctx context.Context, p *clientpb.Push) {
	c := s.c
	if p.Id != 0 && c.dedup.has(p.Id) {
		// Handled before; our ACK may have been lost, so send it again.
		c.stats.redelivered.Add(1)
		if p.Qos >= 1 {
			s.acks.add(p.Id)
		}
		return
	}
	m := &Message{ID: p.Id, App: p.App, Payload: p.Payload, QoS: uint8(min(p.Qos, 255)), BroadcastSeq: p.BroadcastSeq}
	if p.CreatedMs != 0 {
		m.Created = time.UnixMilli(p.CreatedMs)
	}
	if p.ExpiresMs != 0 {
		m.Expires = time.UnixMilli(p.ExpiresMs)
	}
	if err := c.cfg.Handler(ctx, m); err != nil {
		lvl := slog.LevelWarn
		if ctx.Err() != nil {
			lvl = slog.LevelDebug // stopping: not the handler's fault
		}
		c.stats.handlerErrs.Add(1)
		c.log.Log(ctx, lvl, "sdk: handler failed; message left for redelivery", "id", p.Id, "err", err)
		return
	}
	c.stats.handled.Add(1)
	if p.Id != 0 {
		c.dedup.add(p.Id)
	}
	c.bcast.note(p.App, p.BroadcastSeq)
	if p.Qos >= 1 {
		s.acks.add(p.Id)
	}
}

// trySend queues a frame for the writer without blocking the reader; a full
// queue means the connection is not draining and a PONG can be dropped.
func (s *session) trySend(b []byte) {
	select {
	case s.out <- b:
	default:
	}
}

func (s *session) writeLoop(stop <-chan struct{}) error {
	ping := time.NewTicker(s.pingEvery)
	defer ping.Stop()
	ackTimer := time.NewTimer(time.Hour)
	ackTimer.Stop()
	defer ackTimer.Stop()
	for {
		select {
		case <-stop:
			_ = s.conn.SetWriteDeadline(s.c.flushDeadline())
			return s.flushAcks()
		case b := <-s.out:
			if err := s.write(b); err != nil {
				return err
			}
		case <-ping.C:
			if err := s.write(protocol.AppendFrame(nil, protocol.OpPing, 0, s.c.nextSeq(), nil)); err != nil {
				return err
			}
		case <-s.acks.arm:
			ackTimer.Reset(s.c.ackDelay)
		case <-s.acks.full:
			if err := s.flushAcksNow(); err != nil {
				return err
			}
		case <-ackTimer.C:
			if err := s.flushAcksNow(); err != nil {
				return err
			}
		}
	}
}

func (s *session) write(b []byte) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.conn.Write(b); err != nil {
		return fmt.Errorf("sdk: write to %s: %w", s.ep, err)
	}
	return nil
}

func (s *session) flushAcksNow() error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return s.flushAcks()
}

// flushAcks writes every pending id in ACK frames of at most ackBatchMax
// ids, in one write. The caller has set the write deadline.
func (s *session) flushAcks() error {
	ids := s.acks.take()
	if len(ids) == 0 {
		return nil
	}
	var buf []byte
	for len(ids) > 0 {
		n := min(len(ids), ackBatchMax)
		var err error
		if buf, err = protocol.AppendMessage(buf, protocol.OpAck, s.c.nextSeq(), &clientpb.Ack{Ids: ids[:n]}); err != nil {
			return err
		}
		ids = ids[n:]
	}
	if _, err := s.conn.Write(buf); err != nil {
		return fmt.Errorf("sdk: write ACK to %s: %w", s.ep, err)
	}
	return nil
}

// acker collects ids to acknowledge. The writer flushes them ackDelay after
// the first one arrives, or at once when ackBatchMax are pending. Growth is
// bounded by the server's in-flight window (AuthReply.max_inflight).
type acker struct {
	mu   sync.Mutex
	ids  []uint64
	arm  chan struct{}
	full chan struct{}
}

func (a *acker) init() {
	a.arm = make(chan struct{}, 1)
	a.full = make(chan struct{}, 1)
}

func (a *acker) add(id uint64) {
	a.mu.Lock()
	a.ids = append(a.ids, id)
	n := len(a.ids)
	a.mu.Unlock()
	if n == 1 {
		signal(a.arm)
	}
	if n >= ackBatchMax {
		signal(a.full)
	}
}

func (a *acker) take() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := a.ids
	a.ids = nil
	return ids
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

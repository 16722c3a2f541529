package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// Buffer and timing limits of the gnet engine.
const (
	// gnetReadBufferCap is each event loop's read buffer, shared by all of
	// its connections: only bytes of an incomplete frame stay with a
	// connection (in gnet's inbound ring buffer, released once consumed).
	gnetReadBufferCap = 64 << 10
	// gnetWriteBufferCap bounds what gnet keeps in its fixed outbound ring
	// before spilling to a list; the ring is only allocated while a write
	// is incomplete.
	gnetWriteBufferCap = 4 << 10
	// stuckRetry is how often a connection whose socket does not drain is
	// looked at again (the loop has no "writable" callback for us).
	stuckRetry = 50 * time.Millisecond
)

// gnetEngine serves clients on gnet's event loops: no goroutine per
// connection, and an idle connection holds no buffer of its own.
type gnetEngine struct {
	gnet.BuiltinEventEngine
	h   handler
	lim engineLimits
	log *slog.Logger

	booted chan struct{}
	eng    gnet.Engine
	// later runs the loops' timed retries and lingers without a runtime
	// timer (and a goroutine when it fires) per connection.
	later *laterQueue
	// stopped: the loops are shutting down; connections arriving now are
	// closed at once.
	stopped atomic.Bool
}

func newGnetEngine(h handler, lim engineLimits, log *slog.Logger) *gnetEngine {
	return &gnetEngine{h: h, lim: lim, log: log, booted: make(chan struct{}), later: newLaterQueue(laterTick, laterSlots)}
}

// gnetLoops is the number of event loops for procs Ps. A loop waits in a
// blocking epoll_wait that keeps its P until sysmon takes it back (up to
// a sysmon period later), so one P is left to the rest of the room (gRPC,
// pools, the garbage collector): gnet's multicore (a loop per CPU) left
// none on a 2-core box, and a loop per P added hand-offs when the room
// runs with GOMAXPROCS=1 (OPERATIONS.md, "Running on one small box").
func gnetLoops(procs int) int {
	return max(1, procs-1)
}

// Listen runs gnet on addr and returns once its loops accept.
func (e *gnetEngine) Listen(addr string) error {
	runErr := make(chan error, 1)
	go func() {
		runErr <- gnet.Run(e, "tcp://"+addr,
			gnet.WithNumEventLoop(gnetLoops(runtime.GOMAXPROCS(0))),
			gnet.WithReadBufferCap(gnetReadBufferCap),
			gnet.WithWriteBufferCap(gnetWriteBufferCap),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			// As net.Listen does: a room restarted on its port must not
			// wait for the old connections' TIME_WAIT to end.
			gnet.WithReuseAddr(true),
			gnet.WithLogger(gnetLogger{e.log}),
		)
	}()
	select {
	case <-e.booted:
		e.later.Start()
		go func() {
			if err := <-runErr; err != nil {
				e.log.Error("room: gnet engine stopped", "err", err)
			}
		}()
		return nil
	case err := <-runErr:
		if err == nil {
			err = errors.New("stopped before it started")
		}
		return fmt.Errorf("gnet: %w", err)
	}
}

// Close has nothing to do: gnet keeps its listener until Stop, and the
// connections it still accepts meanwhile go to the handler, which is
// draining by then and redirects them (better than a bare close).
func (e *gnetEngine) Close() error { return nil }

// Stop closes the listeners and every connection left.
func (e *gnetEngine) Stop(ctx context.Context) error {
	e.stopped.Store(true)
	select {
	case <-e.booted:
	default:
		return nil
	}
	err := e.eng.Stop(ctx)
	e.later.Stop()
	return err
}

func (e *gnetEngine) OnBoot(eng gnet.Engine) gnet.Action {
	e.eng = eng
	close(e.booted)
	return gnet.None
}

func (e *gnetEngine) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	if e.stopped.Load() {
		return nil, gnet.Close
	}
	// The listener is TCP: keeping the concrete address saves a word on
	// every connection over the net.Addr interface.
	addr, _ := gc.RemoteAddr().(*net.TCPAddr)
	c := &gnetConn{gc: gc, e: e, addr: addr}
	gc.SetContext(c)
	if h := e.h.OnOpen(c); h != nil {
		c.h = h
	}
	return nil, gnet.None
}

func (e *gnetEngine) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*gnetConn)
	if c == nil {
		return gnet.Close
	}
	buf, _ := gc.Peek(-1)
	if c.h == nil || c.isDead() || c.isClosing() {
		// Closing: discard what the peer still sends, within a bound, so
		// the kernel has no unread input to answer our close with a RST.
		t := c.troubleOf()
		t.discarded += int32(len(buf))
		_, _ = gc.Discard(len(buf))
		if t.discarded > maxLingerDiscard {
			return gnet.Close
		}
		return gnet.None
	}
	used := 0
	for used < len(buf) {
		limit := e.lim.preAuthBody
		if c.h.isAuthed() {
			limit = e.lim.maxBody
		}
		f, n, err := protocol.Decode(buf[used:], limit)
		if errors.Is(err, protocol.ErrShortFrame) {
			break
		}
		if err != nil {
			hdr, _ := protocol.ParseHeader(buf[used:], limit)
			c.troubleOf().dead = true
			e.h.OnFrameError(c.h, hdr.Seq, err)
			used = len(buf)
			break
		}
		used += n
		e.h.OnFrame(c.h, f)
		if c.isClosing() {
			used = len(buf)
			break
		}
	}
	_, _ = gc.Discard(used)
	return gnet.None
}

func (e *gnetEngine) OnClose(gc gnet.Conn, _ error) gnet.Action {
	if c, _ := gc.Context().(*gnetConn); c != nil {
		c.mu.Lock()
		c.gone, c.closing = true, true
		c.dropLocked()
		c.mu.Unlock()
		c.closeHandler()
	}
	return gnet.None
}

// gnetConn is a conn on a gnet connection. Frames are queued under the
// sendQueue's lock by any goroutine and written by a flush task on the
// connection's loop, so frames queued while one flush is pending go out in
// one write. It is kept small: one exists per open connection, so what
// only a stalled or closing connection needs sits behind trouble, and the
// flags guarded by the queue's lock fill the queue's padding (80-byte size
// class; TestSessionSizeClass).
type gnetConn struct {
	gc   gnet.Conn
	e    *gnetEngine
	addr *net.TCPAddr

	// Touched only on the loop.
	h       handle       // nil once the handler has been told of the close
	trouble *gnetTrouble // nil while the socket drains and input is read

	// Guarded by sendQueue.mu (its own fields and flushing, gone).
	sendQueue
}

// gnetTrouble is the loop-only state of a connection whose socket did not
// drain or whose input is being discarded. It is allocated when that
// starts and dropped once the socket drains again (discarding only ends
// with the connection).
type gnetTrouble struct {
	stuckSince int64 // monoNanos the socket first did not drain; 0: it does
	discarded  int32 // bytes discarded while closing (≤ maxLingerDiscard + one read)
	dead       bool  // the stream could not be framed; input is discarded
}

// troubleOf returns c's trouble state, allocating it on first use.
func (c *gnetConn) troubleOf() *gnetTrouble {
	if c.trouble == nil {
		c.trouble = &gnetTrouble{}
	}
	return c.trouble
}

// isDead reports whether the stream could not be framed.
func (c *gnetConn) isDead() bool { return c.trouble != nil && c.trouble.dead }

// drained records that the socket took every write: the stall is over.
func (c *gnetConn) drained() {
	t := c.trouble
	if t == nil {
		return
	}
	t.stuckSince = 0
	if t.discarded == 0 && !t.dead {
		c.trouble = nil
	}
}

func (c *gnetConn) RemoteAddr() netip.AddrPort { return tcpAddrPort(c.addr) }

// tcpAddrPort converts a TCP address without allocating; IPv4 comes out as
// IPv4, however the engine stored it.
func tcpAddrPort(a *net.TCPAddr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (c *gnetConn) Send(frame []byte) error { return c.send(c, frame, c.e.lim.sendQueue) }

func (c *gnetConn) CloseWith(frame []byte) bool { return c.closeWith(c, frame) }

func (c *gnetConn) flushLocked(bool) { c.scheduleLocked() }

func (c *gnetConn) Abort() {
	c.mu.Lock()
	c.closing = true
	c.dropLocked()
	c.mu.Unlock()
	_ = c.gc.Close()
}

// scheduleLocked queues one flush task on the loop unless one is pending.
func (c *gnetConn) scheduleLocked() {
	if c.flushing || c.gone {
		return
	}
	c.flushing = true
	if err := c.gc.EventLoop().Execute(context.Background(), c); err != nil {
		// The engine is shutting down and closes the connection itself.
		c.flushing = false
	}
}

// Run is the flush task; it runs on the connection's loop.
func (c *gnetConn) Run(context.Context) error {
	c.mu.Lock()
	if c.gone {
		c.flushing = false
		c.mu.Unlock()
		return nil
	}
	closing := c.closing
	if c.gc.OutboundBuffered() > 0 {
		// The socket did not take the last write: keep frames queued (so a
		// reader that stopped fills the queue and becomes SLOW_CONSUMER)
		// and look again shortly.
		c.mu.Unlock()
		c.waitForSocket(closing)
		return nil
	}
	c.drained()
	q := c.takeLocked()
	c.flushing = false
	c.mu.Unlock()

	if q != nil {
		bp := getWriteBuf()
		buf := appendFrames((*bp)[:0], q)
		releaseFrames(q) // copied into buf
		// gnet copies what the socket does not take into its outbound
		// buffer, so buf goes straight back to the pool.
		c.e.lim.stats.writes.Add(1)
		_, err := c.gc.Write(buf)
		*bp = buf
		putWriteBuf(bp)
		if err != nil {
			return nil // gnet closed the connection; OnClose follows
		}
	}
	if !closing {
		return nil
	}
	c.mu.Lock()
	more := c.queuedLocked() > 0 || c.flushing
	c.mu.Unlock()
	if more {
		return nil
	}
	if c.gc.OutboundBuffered() > 0 {
		c.mu.Lock()
		c.flushing = true
		c.mu.Unlock()
		c.waitForSocket(true)
		return nil
	}
	c.finish()
	return nil
}

// waitForSocket re-runs the flush after stuckRetry, or drops the
// connection once its socket has not drained for the write timeout.
func (c *gnetConn) waitForSocket(closing bool) {
	now := monoNanos(time.Now())
	t := c.troubleOf()
	if t.stuckSince == 0 {
		t.stuckSince = now
	}
	timeout := writeTimeout
	if closing {
		timeout = closeFlushTimeout
	}
	if time.Duration(now-t.stuckSince) > timeout {
		c.Abort()
		return
	}
	c.mu.Lock()
	c.flushing = true
	c.mu.Unlock()
	loop := c.gc.EventLoop()
	c.e.later.After(stuckRetry, func() {
		if loop.Execute(context.Background(), c) != nil {
			c.Abort()
		}
	})
}

// finish runs once the last frame is on the socket: our FIN goes out, the
// handler learns of the close at once (as on the std engine), and the
// socket lingers, discarding input, until the peer closes or closeLinger.
func (c *gnetConn) finish() {
	_ = unix.Shutdown(c.gc.Fd(), unix.SHUT_WR)
	c.closeHandler()
	gc := c.gc
	c.e.later.After(closeLinger, func() { _ = gc.Close() })
}

// closeHandler tells the handler of the close once (on the loop).
func (c *gnetConn) closeHandler() {
	if c.h != nil {
		h := c.h
		c.h = nil
		c.e.h.OnClose(h)
	}
}

// gnetLogger routes gnet's own logs into the room's logger.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Infof(format string, args ...any)  { g.l.Info(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.l.Warn(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// Timing and buffer limits of the goroutine-per-connection engine.
const (
	// writeTimeout drops a client whose socket does not drain for this long.
	writeTimeout = 10 * time.Second
	// closeFlushTimeout bounds flushing the last frames of a closing conn.
	closeFlushTimeout = 2 * time.Second
	// closeLinger: after the last frame and our FIN, unread input is read
	// and discarded this long, so the kernel does not answer it with a RST
	// that could destroy the ERROR frame before the client reads it.
	closeLinger = 2 * time.Second
	// maxLingerDiscard bounds the bytes discarded while lingering.
	maxLingerDiscard = 1 << 20
	// readReleaseAbove: a read buffer grown past this by one large frame is
	// dropped after use, so an idle connection holds no body memory.
	readReleaseAbove = 4 << 10
	// Pooled write buffers start at writeBufSize; larger ones go back to the
	// pool only up to maxPooledWriteBuf.
	writeBufSize      = 4 << 10
	maxPooledWriteBuf = 256 << 10
	// Accept retry back-off on errors such as EMFILE.
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

var slowConsumerFrame = protocol.ErrorFrame(nil, 0, protocol.CodeSlowConsumer, "send queue full")

var writeBufPool = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize); return &b }}

// netEngine runs one reader goroutine per connection and, only while
// frames are queued, one writer goroutine that coalesces them.
type netEngine struct {
	h   handler
	lim engineLimits
	log *slog.Logger

	mu     sync.Mutex
	ln     net.Listener
	closed bool
}

func newNetEngine(h handler, lim engineLimits, log *slog.Logger) *netEngine {
	return &netEngine{h: h, lim: lim, log: log}
}

// Listen binds addr and accepts on it in the background.
func (e *netEngine) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		if err := e.Serve(ln); err != nil {
			e.log.Error("room: tcp engine stopped", "err", err)
		}
	}()
	return nil
}

// Stop has nothing left to release: every connection's goroutine ends with
// its socket, which the drain has closed.
func (e *netEngine) Stop(context.Context) error { return e.Close() }

// Serve accepts on ln until Close; it returns nil after Close.
func (e *netEngine) Serve(ln net.Listener) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ln.Close()
	}
	e.ln = ln
	e.mu.Unlock()
	wait := acceptBackoffMin
	for {
		nc, err := ln.Accept()
		if err != nil {
			if e.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors or similar: keep serving the connections we
			// have and try again shortly.
			e.log.Warn("room: accept failed", "err", err, "retry_in", wait)
			time.Sleep(wait)
			wait = min(wait*2, acceptBackoffMax)
			continue
		}
		wait = acceptBackoffMin
		go e.serveConn(nc)
	}
}

func (e *netEngine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

func (e *netEngine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	if e.ln != nil {
		return e.ln.Close()
	}
	return nil
}

func (e *netEngine) serveConn(nc net.Conn) {
	c := &stdConn{nc: nc, limit: e.lim.sendQueue, stats: e.lim.stats}
	s := e.h.OnOpen(c)
	if s == nil {
		c.linger()
		return
	}
	// The reader keeps no bytes between frames, so it can be swapped for
	// one with the full limit once AUTH has succeeded.
	r := protocol.NewReader(nc, e.lim.preAuthBody)
	authed := false
	for {
		f, err := r.Read()
		if c.isClosing() {
			break
		}
		if err != nil {
			if isFramingError(err) && !c.isClosing() {
				e.h.OnFrameError(s, f.Seq, err)
			}
			break
		}
		e.h.OnFrame(s, f)
		if !authed && s.isAuthed() {
			authed = true
			r = protocol.NewReader(nc, e.lim.maxBody)
		}
		// The AUTH body (a JWT) is the largest most connections ever send;
		// idle connections then only PING, so its buffer would sit unused.
		if f.Op == protocol.OpAuth || cap(f.Body) > readReleaseAbove {
			r.Release()
		}
	}
	e.h.OnClose(s)
	if c.isClosing() {
		c.linger()
	} else {
		c.Abort()
	}
}

// stdConn is a conn over a net.Conn. Its sendQueue's lock also guards the
// fields below.
type stdConn struct {
	nc    net.Conn
	limit int
	stats *engineStats

	sendQueue
	writing   bool // a writer goroutine owns the socket's write side
	closed    bool // socket closed; drop everything
	flushed   bool // last frame written and FIN sent
	lingering bool // the reader is discarding input before the close
}

func (c *stdConn) RemoteAddr() netip.AddrPort {
	a, _ := c.nc.RemoteAddr().(*net.TCPAddr)
	return tcpAddrPort(a)
}

func (c *stdConn) Send(frame []byte) error { return c.send(c, frame, c.limit) }

func (c *stdConn) CloseWith(frame []byte) bool { return c.closeWith(c, frame) }

// flushLocked starts the writer unless one runs; a close shortens a write
// that may be stuck on a client that stopped reading.
func (c *stdConn) flushLocked(closeBegun bool) {
	if closeBegun {
		_ = c.nc.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	}
	if !c.writing && !c.closed {
		c.writing = true
		go c.writeLoop()
	}
}

func (c *stdConn) Abort() {
	c.mu.Lock()
	c.closing, c.closed = true, true
	c.dropLocked()
	c.mu.Unlock()
	_ = c.nc.Close()
}

// writeLoop writes everything queued in one syscall per round and exits
// when the queue is empty, so an idle connection has no writer goroutine.
func (c *stdConn) writeLoop() {
	var bp *[]byte
	defer func() {
		if bp != nil {
			putWriteBuf(bp)
		}
	}()
	for {
		c.mu.Lock()
		if c.closed || c.queuedLocked() == 0 {
			c.writing = false
			finish := c.closing && !c.closed
			c.dropLocked()
			c.mu.Unlock()
			if finish {
				c.finishWrite()
			}
			return
		}
		q := c.takeLocked()
		closing := c.closing
		c.mu.Unlock()

		if bp == nil {
			bp = getWriteBuf()
		}
		buf := appendFrames((*bp)[:0], q)
		*bp = buf
		releaseFrames(q)
		timeout := writeTimeout
		if closing {
			timeout = closeFlushTimeout
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
		c.stats.writes.Add(1)
		if _, err := c.nc.Write(buf); err != nil {
			c.Abort()
		}
	}
}

// finishWrite sends our FIN after the last frame. A reader still waiting
// for frames is woken at once (so OnClose runs now); a lingering one gets
// the short linger deadline.
func (c *stdConn) finishWrite() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushed = true
	if c.lingering {
		_ = c.nc.SetReadDeadline(time.Now().Add(closeLinger))
	} else {
		_ = c.nc.SetReadDeadline(time.Now())
	}
}

// linger discards input until the client closes or the deadline passes,
// then closes the socket. Deadlines are set under the lock so the writer's
// and the reader's never overtake each other.
func (c *stdConn) linger() {
	c.mu.Lock()
	c.lingering = true
	if c.flushed {
		_ = c.nc.SetReadDeadline(time.Now().Add(closeLinger))
	} else {
		// The writer shortens this once it has flushed; this bound holds
		// for a writer that never gets there.
		_ = c.nc.SetReadDeadline(time.Now().Add(closeFlushTimeout + closeLinger))
	}
	c.mu.Unlock()
	_, _ = io.CopyN(io.Discard, c.nc, maxLingerDiscard)
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	_ = c.nc.Close()
}

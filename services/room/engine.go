package main

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// The session logic talks to connections only through conn and is driven
// only through handler, so the engine that moves the bytes (a goroutine per
// connection, or gnet's event loops) can be swapped with -engine without
// touching it.

// Errors of conn.Send.
var (
	// errQueueFull: the send queue was full; the connection has been told
	// SLOW_CONSUMER and is closing.
	errQueueFull = errors.New("room: send queue full")
	// errClosed: the connection is closing or closed.
	errClosed = errors.New("room: connection closed")
)

// conn is the write side of one client connection. Every method is safe for
// concurrent use and never blocks on the network.
type conn interface {
	// Send queues one encoded frame. The frame must not be modified
	// afterwards (one encoding is shared by many connections on fan-out).
	// When the queue already holds its limit, Send queues an ERROR
	// SLOW_CONSUMER instead, starts closing and returns errQueueFull.
	Send(frame []byte) error
	// CloseWith queues a last frame (beyond the queue limit; nil for none),
	// flushes and closes. It reports whether this call began the close;
	// later calls and Sends are ignored / refused.
	CloseWith(frame []byte) bool
	// Abort closes at once, dropping anything queued.
	Abort()
	// RemoteAddr is the peer address, for admission and sessions (the zero
	// AddrPort when unknown). A value, not a string: formatting the address
	// (net.TCPAddr.String allocates twice) only to parse it back was two
	// short-lived allocations per login, fragmenting the small size classes
	// that idle connections live in.
	RemoteAddr() netip.AddrPort
}

// handle is the handler's state for one connection, opaque to engines: all
// an engine may ask is whether the peer has authenticated (which raises its
// body limit from preAuthBody to maxBody).
type handle interface {
	isAuthed() bool
}

// handler is what an engine drives. For one connection, OnOpen, OnFrame,
// OnFrameError and OnClose are never called concurrently with each other.
//
// None of them may block: on the gnet engine they run on an event loop
// shared by thousands of connections, so anything that waits (a call to a
// peer, a lock held across I/O) goes to a bounded pool or a batcher.
type handler interface {
	// OnOpen is called for every accepted connection. It returns nil when it
	// refused the connection (having called CloseWith on it).
	OnOpen(c conn) handle
	// OnFrame handles one decoded frame; f.Body is only valid during the
	// call. Frames that arrive after the connection began closing are
	// discarded by the engine.
	OnFrame(h handle, f protocol.Frame)
	// OnFrameError is called once when the byte stream cannot be framed
	// (protocol.CodeOf maps err); no frame follows it. seq is the sequence
	// number of the header that failed its checks, 0 when even the magic
	// was wrong.
	OnFrameError(h handle, seq uint32, err error)
	// OnClose is called once when the connection is gone or going.
	OnClose(h handle)
}

// engine accepts client connections and moves frames between them and a
// handler.
type engine interface {
	// Listen binds addr and starts serving in the background; it returns
	// once the address accepts connections (or could not be bound). gnet
	// opens its own listeners, so engines bind rather than take one.
	Listen(addr string) error
	// Close stops accepting. Open connections are left to the handler.
	Close() error
	// Stop closes whatever connections are left and releases the engine
	// within ctx; the drain calls it last.
	Stop(ctx context.Context) error
}

// Engine names of -engine.
const (
	engineStd  = "std"
	engineGnet = "gnet"
)

// newEngine returns the engine -engine names.
func newEngine(name string, h handler, lim engineLimits, log *slog.Logger) (engine, error) {
	switch name {
	case engineStd:
		return newNetEngine(h, lim, log), nil
	case engineGnet:
		return newGnetEngine(h, lim, log), nil
	}
	return nil, errors.New("room: -engine " + name + ": want " + engineGnet + " or " + engineStd)
}

// engineLimits are the knobs every engine honours.
type engineLimits struct {
	// maxBody is the largest frame body accepted (-max-frame).
	maxBody int
	// preAuthBody is the largest body accepted while the connection is not
	// authenticated (handler sessions report it with isAuthed).
	preAuthBody int
	// sendQueue is the most frames queued for one connection (-send-queue).
	sendQueue int
	// stats counts what engines do, for metrics and tests.
	stats *engineStats
}

// engineStats are engine counters shared by all connections.
type engineStats struct {
	// writes counts socket writes: with frames queued faster than they are
	// written, one write carries many (frames out / writes).
	writes atomic.Uint64
}

// isFramingError reports whether err came from the frame codec (as opposed
// to the network), so the peer gets an ERROR before the close.
func isFramingError(err error) bool {
	return errors.Is(err, protocol.ErrBadMagic) || errors.Is(err, protocol.ErrBadVersion) ||
		errors.Is(err, protocol.ErrUnknownOp) || errors.Is(err, protocol.ErrFrameTooLarge)
}

package main

import (
	"errors"
	"net"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// The session logic talks to connections only through conn and is driven
// only through handler, so the goroutine-per-connection engine can be
// replaced by an event loop (gnet) without touching it.

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
	// RemoteAddr is the peer address, for logs and sessions.
	RemoteAddr() string
}

// handler is what an engine drives. For one connection, OnOpen, OnFrame,
// OnFrameError and OnClose are never called concurrently with each other.
type handler interface {
	// OnOpen is called for every accepted connection. It returns nil when it
	// refused the connection (having called CloseWith on it).
	OnOpen(c conn) *session
	// OnFrame handles one decoded frame; f.Body is only valid during the
	// call. Frames that arrive after the connection began closing are
	// discarded by the engine.
	OnFrame(s *session, f protocol.Frame)
	// OnFrameError is called once when the byte stream cannot be framed
	// (protocol.CodeOf maps err); no frame follows it.
	OnFrameError(s *session, err error)
	// OnClose is called once when the connection is gone or going.
	OnClose(s *session)
}

// engine accepts client connections and moves frames between them and a
// handler.
type engine interface {
	// Serve accepts on ln until Close; it returns nil after Close.
	Serve(ln net.Listener) error
	// Close stops accepting. Open connections are left to the handler.
	Close() error
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
}

// isFramingError reports whether err came from the frame codec (as opposed
// to the network), so the peer gets an ERROR before the close.
func isFramingError(err error) bool {
	return errors.Is(err, protocol.ErrBadMagic) || errors.Is(err, protocol.ErrBadVersion) ||
		errors.Is(err, protocol.ErrUnknownOp) || errors.Is(err, protocol.ErrFrameTooLarge)
}

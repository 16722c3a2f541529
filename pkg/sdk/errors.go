package sdk

import (
	"errors"
	"fmt"

	"github.com/pushgw/pushgw/pkg/protocol"
)

var (
	// ErrKicked is matched (errors.Is) by the error Run returns when the
	// server sent KICK. errors.As with *ServerError gives the code and reason.
	ErrKicked = errors.New("sdk: kicked by server")
	// ErrClosed is returned by Run after Close, and by calls on a closed Client.
	ErrClosed = errors.New("sdk: client closed")
	// ErrNotConnected is returned by Uplink while no connection is up.
	ErrNotConnected = errors.New("sdk: not connected")
	// ErrTooManyUplinks is returned when MaxPendingUplinks replies are already awaited.
	ErrTooManyUplinks = errors.New("sdk: too many uplinks awaiting a reply")

	errTokenFunc = errors.New("sdk: TokenFunc failed")
)

// ServerError is an error code the server sent in an ERROR, KICK or
// UPLINK_REPLY frame.
type ServerError struct {
	Op      protocol.Op // the frame that carried it
	Code    protocol.Code
	Message string
}

func (e *ServerError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("sdk: server %s: %s (%d)", e.Op, e.Code, uint32(e.Code))
	}
	return fmt.Sprintf("sdk: server %s: %s (%d): %s", e.Op, e.Code, uint32(e.Code), e.Message)
}

// Is makes errors.Is(err, ErrKicked) true for a KICK.
func (e *ServerError) Is(target error) bool { return target == ErrKicked && e.Op == protocol.OpKick }

// fatal reports whether retrying cannot help: the server does not know the
// app or will never accept the token.
func (e *ServerError) fatal() bool {
	switch {
	case e.Op == protocol.OpKick:
		return true
	case e.Code == protocol.CodeTokenInvalid, e.Code == protocol.CodeAppUnknown:
		return true
	}
	return false
}

// redirectError ends a session on REDIRECT.
type redirectError struct {
	endpoints []string
	backoffMs uint32
	reason    string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("sdk: redirected to %v after %d ms: %s", e.endpoints, e.backoffMs, e.reason)
}

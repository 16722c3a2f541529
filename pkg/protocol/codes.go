package protocol

import (
	"errors"
	"fmt"
)

// Code is a stable numeric error code carried in ERROR, KICK and
// UPLINK_REPLY bodies. Values are on the wire; never renumber.
type Code uint32

const (
	CodeOK Code = 0
	// Framing (the connection is closed after the ERROR frame).
	CodeBadFrame      Code = 1001 // bad magic, or a truncated frame
	CodeBadVersion    Code = 1002
	CodeFrameTooLarge Code = 1003
	CodeUnknownOp     Code = 1004
	CodeBadBody       Code = 1005 // body is not a valid protobuf of the op's type
	// Authentication (closed after the ERROR frame).
	CodeAuthRequired  Code = 2001 // a frame other than AUTH before AUTH
	CodeAuthTimeout   Code = 2002
	CodeTokenInvalid  Code = 2003 // malformed token or bad signature
	CodeTokenExpired  Code = 2004
	CodeAppUnknown    Code = 2005
	CodeAlreadyAuthed Code = 2006
	// CodeResumeMiss answers an Auth.resume_only AUTH the room cannot
	// resume: the client logs in again without resume_only.
	CodeResumeMiss Code = 2007
	// Session and flow control.
	CodeHeartbeatTimeout   Code = 3001
	CodeSlowConsumer       Code = 3002 // send queue full
	CodeTooManyConnections Code = 3003
	CodeRateLimited        Code = 3004
	CodeKicked             Code = 3005
	CodeServerShutdown     Code = 3006
	CodeReplaced           Code = 3007 // same device logged in again elsewhere
	// Uplink (sent in UPLINK_REPLY; the connection stays open).
	CodeUplinkFailed    Code = 4001
	CodeUplinkNoWebhook Code = 4002
	CodeUplinkTooLarge  Code = 4003
	CodeUplinkQueueFull Code = 4004 // the app's webhook queue is full (webhook slow or down)
	// Server side.
	CodeInternal    Code = 5001
	CodeUnavailable Code = 5002
	// Several apps on one connection (sent in BIND_REPLY and UNBIND_REPLY;
	// the connection stays open).
	CodeBindVendor   Code = 6001 // the app is not of the connection's vendor
	CodeBindLimit    Code = 6002 // the connection already carries MaxBoundApps bound apps
	CodeAlreadyBound Code = 6003 // the app is already on this connection
	CodeNotBound     Code = 6004 // UNBIND of an app that is not bound here
)

// MaxBoundApps is the most apps one connection carries besides the one it
// authenticated with (BIND beyond it gets BIND_LIMIT).
const MaxBoundApps = 8

var codeNames = map[Code]string{
	CodeOK: "OK", CodeBadFrame: "BAD_FRAME", CodeBadVersion: "BAD_VERSION",
	CodeFrameTooLarge: "FRAME_TOO_LARGE", CodeUnknownOp: "UNKNOWN_OP", CodeBadBody: "BAD_BODY",
	CodeAuthRequired: "AUTH_REQUIRED", CodeAuthTimeout: "AUTH_TIMEOUT", CodeTokenInvalid: "TOKEN_INVALID",
	CodeTokenExpired: "TOKEN_EXPIRED", CodeAppUnknown: "APP_UNKNOWN", CodeAlreadyAuthed: "ALREADY_AUTHED",
	CodeResumeMiss: "RESUME_MISS", CodeHeartbeatTimeout: "HEARTBEAT_TIMEOUT", CodeSlowConsumer: "SLOW_CONSUMER",
	CodeTooManyConnections: "TOO_MANY_CONNECTIONS", CodeRateLimited: "RATE_LIMITED",
	CodeKicked: "KICKED", CodeServerShutdown: "SERVER_SHUTDOWN", CodeReplaced: "REPLACED",
	CodeUplinkFailed: "UPLINK_FAILED", CodeUplinkNoWebhook: "UPLINK_NO_WEBHOOK", CodeUplinkTooLarge: "UPLINK_TOO_LARGE",
	CodeUplinkQueueFull: "UPLINK_QUEUE_FULL", CodeInternal: "INTERNAL", CodeUnavailable: "UNAVAILABLE",
	CodeBindVendor: "BIND_VENDOR", CodeBindLimit: "BIND_LIMIT", CodeAlreadyBound: "ALREADY_BOUND", CodeNotBound: "NOT_BOUND",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("CODE(%d)", uint32(c))
}

// Codes lists every defined code in ascending order (for docs and tests).
func Codes() []Code {
	return []Code{CodeOK, CodeBadFrame, CodeBadVersion, CodeFrameTooLarge, CodeUnknownOp, CodeBadBody,
		CodeAuthRequired, CodeAuthTimeout, CodeTokenInvalid, CodeTokenExpired, CodeAppUnknown, CodeAlreadyAuthed,
		CodeResumeMiss, CodeHeartbeatTimeout, CodeSlowConsumer, CodeTooManyConnections, CodeRateLimited, CodeKicked,
		CodeServerShutdown, CodeReplaced, CodeUplinkFailed, CodeUplinkNoWebhook, CodeUplinkTooLarge, CodeUplinkQueueFull,
		CodeInternal, CodeUnavailable, CodeBindVendor, CodeBindLimit, CodeAlreadyBound, CodeNotBound}
}

// CodeOf maps a decoding error to the code a server sends before closing.
func CodeOf(err error) Code {
	switch {
	case err == nil:
		return CodeOK
	case errors.Is(err, ErrBadMagic), errors.Is(err, ErrShortFrame):
		return CodeBadFrame
	case errors.Is(err, ErrBadVersion):
		return CodeBadVersion
	case errors.Is(err, ErrUnknownOp):
		return CodeUnknownOp
	case errors.Is(err, ErrFrameTooLarge):
		return CodeFrameTooLarge
	default:
		return CodeInternal
	}
}

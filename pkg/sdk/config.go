package sdk

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// Version is sent as Auth.sdk_version.
const Version = "pushgw-go/1"

// Defaults for zero Config fields, and fixed limits.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultBackoffMin  = 250 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
	DefaultDedupSize   = 4096
	// DefaultHeartbeat is assumed when AUTH_REPLY carries none.
	DefaultHeartbeat = 30 * time.Second
	// DefaultUplinkTimeout bounds Uplink when ctx has no deadline.
	DefaultUplinkTimeout = 10 * time.Second
	// MaxPendingUplinks bounds the uplinks awaiting a reply on a connection.
	MaxPendingUplinks = 256

	ackFlushDelay = 20 * time.Millisecond
	ackBatchMax   = 100
	sendQueueSize = 64
	writeTimeout  = 10 * time.Second
	authTimeout   = 10 * time.Second
	// resumeAuthTimeout bounds a resume-only AUTH: a room answers a resume
	// at once (no register, no saver), so a slower one is likely hung and
	// the client logs in elsewhere rather than wait out authTimeout.
	resumeAuthTimeout = time.Second
	maxFailedKept     = 16
	minPingPeriod     = 100 * time.Millisecond
	deadMarginMax     = 5 * time.Second
	shutdownFlush     = time.Second
	dispatcherBody    = 64 << 10
)

// Config configures a Client. Zero fields take the defaults above.
type Config struct {
	// DispatcherURL is the dispatcher's base URL, e.g. http://127.0.0.1:7080.
	// Empty: only Endpoints are used.
	DispatcherURL string
	// Endpoints (host:port) are tried when the dispatcher is unset or fails.
	Endpoints []string

	App    string
	User   string
	Device string
	// Platform is a free-form description sent in AUTH (e.g. "linux/amd64").
	Platform string

	// Token is a fixed client token; TokenFunc, if set, is called instead on
	// every connect, so an expired token can be re-minted.
	Token     string
	TokenFunc func(ctx context.Context) (string, error)

	// OnUnbind, if set, is told when an app added with Client.Bind is no
	// longer bound: the server ended it (code KICKED or REPLACED), or it
	// could not be bound again after a reconnect. Called from the
	// connection's goroutines; it must not block.
	OnUnbind func(app string, code protocol.Code, reason string)

	// Handler receives each pushed message, one at a time in arrival order.
	// Returning nil ACKs a QoS 1 message; an error leaves it unacknowledged
	// so the server redelivers it later. ctx is cancelled when the Client
	// stops. Required.
	Handler func(ctx context.Context, m *Message) error

	// OnState, if set, is told of each connect and disconnect. It runs on the
	// connection's goroutine and must return quickly.
	OnState func(s State, endpoint string)

	DialTimeout time.Duration
	BackoffMin  time.Duration
	BackoffMax  time.Duration
	// DedupSize is how many handled message ids are remembered.
	DedupSize int
	// MaxFrame is the largest frame body accepted from the server.
	MaxFrame int
	// LastBroadcastSeq is the highest broadcast seq this device handled in
	// an earlier run (Client.LastBroadcastSeq, saved by the app). The
	// server sends the unexpired broadcasts after it on connect; 0 (a new
	// device) gets every unexpired one. It is a plain seq: which broadcasts
	// below it the client missed (broadcast_gaps) is kept only while the
	// Client lives, so a gap open when the process ends is not caught up
	// after a restart. It covers Config.App only; bound apps start at 0.
	LastBroadcastSeq uint64

	Logger     *slog.Logger
	HTTPClient *http.Client
}

// State is a connection state reported to Config.OnState.
type State int

const (
	StateDisconnected State = iota
	StateConnected
)

func (s State) String() string {
	if s == StateConnected {
		return "connected"
	}
	return "disconnected"
}

// Message is one pushed message.
type Message struct {
	ID      uint64
	App     string
	Payload []byte
	QoS     uint8
	Created time.Time
	// Expires is zero when the message never expires.
	Expires time.Time
	// BroadcastSeq is the app's broadcast sequence number of a broadcast;
	// 0 for a push to this user.
	BroadcastSeq uint64
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.Handler == nil {
		return out, errors.New("sdk: Config.Handler is required")
	}
	if out.DispatcherURL == "" && len(out.Endpoints) == 0 {
		return out, errors.New("sdk: Config needs DispatcherURL or Endpoints")
	}
	if out.Token == "" && out.TokenFunc == nil {
		return out, errors.New("sdk: Config needs Token or TokenFunc")
	}
	if out.DialTimeout <= 0 {
		out.DialTimeout = DefaultDialTimeout
	}
	if out.BackoffMin <= 0 {
		out.BackoffMin = DefaultBackoffMin
	}
	if out.BackoffMax <= 0 {
		out.BackoffMax = DefaultBackoffMax
	}
	if out.BackoffMax < out.BackoffMin {
		out.BackoffMax = out.BackoffMin
	}
	if out.DedupSize <= 0 {
		out.DedupSize = DefaultDedupSize
	}
	if out.MaxFrame <= 0 {
		out.MaxFrame = protocol.DefaultMaxBodySize
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	if out.HTTPClient == nil {
		out.HTTPClient = &http.Client{Timeout: out.DialTimeout}
	}
	out.Endpoints = append([]string(nil), out.Endpoints...)
	return out, nil
}

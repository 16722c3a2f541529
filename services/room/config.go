package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/service"
)

// Flag defaults (docs/DEVELOPING.md).
const (
	defaultTCP            = "127.0.0.1:7300"
	defaultGRPC           = "127.0.0.1:7301"
	defaultAdmin          = "127.0.0.1:7302"
	defaultHeartbeat      = 30 * time.Second
	defaultMissedBeats    = 3
	defaultAuthTimeout    = 10 * time.Second
	defaultMaxConns       = 100000
	defaultSendQueue      = 128
	defaultMaxFrame       = protocol.DefaultMaxBodySize
	defaultSessionRefresh = 60 * time.Second
	defaultEngine         = engineGnet
	// defaultMaxPreAuth bounds connections that have not authenticated
	// yet: a flood of idle sockets fills this, not -max-conns.
	defaultMaxPreAuth = 10000
	// defaultAuthReplyWait bounds how long AUTH_REPLY waits for register
	// to hold the session: a register batch takes a few ms, and past the
	// bound the login succeeds anyway (registered when register answers).
	defaultAuthReplyWait = 250 * time.Millisecond
	maxAuthReplyWait     = 10 * time.Second
	// maxReportHold keeps delivery reports well inside center's
	// redelivery sweep age (3 s): held longer, the sweep would resend
	// messages whose delivery the room has not told saver of yet.
	maxReportHold = time.Second
	// Inbound frames per connection: the Go SDK sends at most one ACK frame
	// per 20 ms plus its PINGs, so 100/s leaves room for uplinks; a burst of
	// 100 stays below the default send queue, so a client flooding requests
	// without reading the replies is told RATE_LIMITED before its queue of
	// replies could make it SLOW_CONSUMER.
	defaultMaxFrameRate = 100
	defaultFrameBurst   = 100
	// Sanity bounds on the flags.
	minHeartbeat   = time.Second
	maxHeartbeat   = time.Hour
	minSendQueue   = 4
	maxSendQueue   = 1 << 16
	minMaxFrame    = 1 << 10
	minSessionTick = time.Second
	maxFrameRate   = 1_000_000
	// defaultTagCheckBatch is saver's limit of users per TagMembership
	// call (broadcast_tag.go).
	defaultTagCheckBatch = tagCheckUsers
)

type config struct {
	// noCatchUpRetry makes a failed broadcast catch-up read give up at
	// once instead of retrying; not a flag: for unit tests run without a
	// saver.
	noCatchUpRetry bool
	common         service.Common
	tcp            string
	advertiseTCP   string
	grpc           string
	heartbeat      time.Duration
	missedBeats    int
	authTimeout    time.Duration
	maxConns       int
	sendQueue      int
	maxFrame       int
	sessionRefresh time.Duration
	maxFrameRate   int
	frameBurst     int
	engine         string
	authReplyWait  time.Duration
	maxPreAuth     int
	// reportHold is how long a QoS 1 delivery report waits for its ACK
	// (report_hold.go); 0 reports at once.
	reportHold time.Duration
	// tagCheckBatch is the distinct users per membership call of a tag
	// broadcast's fan-out; 0 (a config built without flags) means
	// defaultTagCheckBatch.
	tagCheckBatch int
	// drain holds -drain-rate and -drain-deadline (drain_pace.go).
	drain drainConfig
	// flash is the flash-reconnect parking lot's flags (resume.go).
	flash flashConfig
	// gc is -gc-percent (gcpolicy.go).
	gc service.GCConfig
}

func (c *config) bind(fs *flag.FlagSet) {
	c.common.Bind(fs, "room", defaultAdmin)
	fs.StringVar(&c.tcp, "tcp", defaultTCP, "client TCP listen address")
	fs.StringVar(&c.advertiseTCP, "advertise-tcp", "", "client TCP address published for the dispatcher (default: the -tcp address)")
	fs.StringVar(&c.grpc, "grpc", defaultGRPC, "internal gRPC listen address (Room service), published for center")
	fs.DurationVar(&c.heartbeat, "heartbeat", defaultHeartbeat, "PING interval told to clients")
	fs.IntVar(&c.missedBeats, "missed-beats", defaultMissedBeats, "a connection silent for heartbeat x missed-beats is closed")
	fs.DurationVar(&c.authTimeout, "auth-timeout", defaultAuthTimeout, "time a new connection has to send AUTH")
	fs.IntVar(&c.maxConns, "max-conns", defaultMaxConns, "most open client connections; beyond it new ones get TOO_MANY_CONNECTIONS")
	fs.IntVar(&c.sendQueue, "send-queue", defaultSendQueue, "most frames queued per connection; beyond it the client is SLOW_CONSUMER and closed")
	fs.IntVar(&c.maxFrame, "max-frame", defaultMaxFrame, "largest client frame body in bytes")
	fs.IntVar(&c.maxFrameRate, "max-frame-rate", defaultMaxFrameRate, "frames per second one client connection may send on average (0: unlimited); beyond it and its burst the client gets RATE_LIMITED and is closed")
	fs.IntVar(&c.frameBurst, "frame-burst", defaultFrameBurst, "frames one client connection may send back to back before -max-frame-rate applies")
	fs.StringVar(&c.engine, "engine", defaultEngine, "client connection engine: gnet (event loops) or std (a goroutine per connection)")
	fs.DurationVar(&c.authReplyWait, "auth-reply-wait", defaultAuthReplyWait, "longest AUTH_REPLY waits for register to hold a new session; past it the login succeeds anyway")
	fs.DurationVar(&c.reportHold, "report-hold", deliveredHold, "longest a QoS 1 delivery report waits in the room for the message's ACK, to reach saver in one Report with it; 0 reports at once")
	fs.IntVar(&c.maxPreAuth, "max-preauth", defaultMaxPreAuth, "most open connections that have not authenticated yet; beyond it new ones get TOO_MANY_CONNECTIONS")
	fs.DurationVar(&c.sessionRefresh, "session-refresh", defaultSessionRefresh, "interval of session TTL refreshes at register (keep below register's -session-ttl / 2)")
	c.drain.bind(fs)
	fs.IntVar(&c.tagCheckBatch, "tag-check-batch", defaultTagCheckBatch, "users per saver TagMembership call while a tag broadcast fans out (1..1000)")
	c.flash.bind(fs)
	c.gc.Bind(fs, defaultGCPercent, gcPercentWhy)
}

// setGCDefault gives a config built without flags the room's GC target.
func (c *config) setGCDefault() {
	if c.gc.Percent == 0 {
		c.gc.Percent = defaultGCPercent
	}
}

func (c *config) validate() error {
	var errs []error
	if c.advertiseTCP == "" {
		c.advertiseTCP = c.tcp
	}
	for name, addr := range map[string]string{"-tcp": c.tcp, "-grpc": c.grpc, "-advertise-tcp": c.advertiseTCP} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
		}
	}
	if c.heartbeat < minHeartbeat || c.heartbeat > maxHeartbeat {
		errs = append(errs, fmt.Errorf("-heartbeat %v: want %v..%v", c.heartbeat, minHeartbeat, maxHeartbeat))
	}
	if c.missedBeats < 1 {
		errs = append(errs, fmt.Errorf("-missed-beats %d: want >= 1", c.missedBeats))
	}
	if c.authTimeout <= 0 {
		errs = append(errs, fmt.Errorf("-auth-timeout %v: want > 0", c.authTimeout))
	}
	if c.maxConns < 1 {
		errs = append(errs, fmt.Errorf("-max-conns %d: want >= 1", c.maxConns))
	}
	if c.sendQueue < minSendQueue || c.sendQueue > maxSendQueue {
		errs = append(errs, fmt.Errorf("-send-queue %d: want %d..%d", c.sendQueue, minSendQueue, maxSendQueue))
	}
	if c.maxFrame < minMaxFrame || c.maxFrame > protocol.MaxBodySizeLimit {
		errs = append(errs, fmt.Errorf("-max-frame %d: want %d..%d", c.maxFrame, minMaxFrame, protocol.MaxBodySizeLimit))
	}
	if c.sessionRefresh < minSessionTick {
		errs = append(errs, fmt.Errorf("-session-refresh %v: want >= %v", c.sessionRefresh, minSessionTick))
	}
	if c.maxFrameRate < 0 || c.maxFrameRate > maxFrameRate {
		errs = append(errs, fmt.Errorf("-max-frame-rate %d: want 0 (unlimited)..%d", c.maxFrameRate, maxFrameRate))
	}
	if c.tagCheckBatch == 0 {
		c.tagCheckBatch = defaultTagCheckBatch
	}
	if c.tagCheckBatch < 1 || c.tagCheckBatch > tagCheckUsers {
		errs = append(errs, fmt.Errorf("-tag-check-batch %d: want 1..%d", c.tagCheckBatch, tagCheckUsers))
	}
	if c.maxFrameRate > 0 && c.frameBurst < 1 {
		errs = append(errs, fmt.Errorf("-frame-burst %d: want >= 1", c.frameBurst))
	}
	if c.reportHold < 0 || c.reportHold > maxReportHold {
		errs = append(errs, fmt.Errorf("-report-hold %v: want 0..%v", c.reportHold, maxReportHold))
	}
	if c.authReplyWait < 0 || c.authReplyWait > maxAuthReplyWait {
		errs = append(errs, fmt.Errorf("-auth-reply-wait %v: want 0..%v", c.authReplyWait, maxAuthReplyWait))
	}
	if c.maxPreAuth < 1 {
		errs = append(errs, fmt.Errorf("-max-preauth %d: want >= 1", c.maxPreAuth))
	}
	if err := c.drain.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.engine != engineGnet && c.engine != engineStd {
		errs = append(errs, fmt.Errorf("-engine %q: want %s or %s", c.engine, engineGnet, engineStd))
	}
	if err := c.flash.validate(); err != nil {
		errs = append(errs, err)
	}
	c.setGCDefault()
	if err := c.gc.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// frameRate is the per-connection inbound frame limit of -max-frame-rate
// and -frame-burst.
func (c *config) frameRate() frameRate {
	return newFrameRate(float64(c.maxFrameRate), c.frameBurst)
}

// liveTimeout is how long an authenticated connection may stay silent.
func (c *config) liveTimeout() time.Duration {
	return c.heartbeat * time.Duration(c.missedBeats)
}

// maxInflight is the bound told to clients in AUTH_REPLY and the page size
// of pending messages: half the send queue, so a page of pending messages
// never makes a fresh connection a slow consumer by itself.
func (c *config) maxInflight() int {
	return max(c.sendQueue/2, 1)
}

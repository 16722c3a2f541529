package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
)

// Client keeps one connection to a pushgw room. Create it with New, run it
// with Run, stop it with Close (or by cancelling Run's context).
type Client struct {
	cfg Config
	log *slog.Logger

	seq     atomic.Uint32
	closing chan struct{}
	closeMu sync.Mutex
	// closeDeadline bounds the final ACK flush; set by Close before closing.
	closeDeadline time.Time
	closeOnce     sync.Once
	running       atomic.Bool
	done          chan struct{}

	sessMu sync.Mutex
	sess   *session

	// Used only by Run's goroutine.
	dedup  *dedup
	failed []string
	// lastAnswer is the dispatcher's last answer kept, used while it is
	// down or answers with an older room list; staleAnswers counts older
	// answers refused in a row.
	lastAnswer   dispatchAnswer
	staleAnswers int

	stats stats
	// bcast are the broadcast seqs handled, per app, kept across
	// reconnects and sent in AUTH and BIND (broadcast.go).
	bcast *broadcastSeqs
	// resume is the last AuthReply.resume_token (resume.go).
	resume atomic.Pointer[string]

	// ackDelay is ackFlushDelay; tests raise it to observe Close's flush.
	ackDelay time.Duration
	// binds are the apps bound besides Config.App (bind.go).
	binds binds
}

// New validates cfg and returns a Client. It does not connect.
func New(cfg Config) (*Client, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cl := &Client{
		cfg:      c,
		log:      c.Logger,
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		dedup:    newDedup(c.DedupSize),
		ackDelay: ackFlushDelay,
		bcast:    newBroadcastSeqs(c.LastBroadcastSeq),
	}
	return cl, nil
}

// Run connects and keeps the client connected until ctx is done (returns
// ctx.Err()), Close is called (returns ErrClosed), or the server ends the
// session for good: a KICK (errors.Is(err, ErrKicked)) or a fatal
// authentication error (*ServerError). Run may be called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("sdk: Run called twice")
	}
	defer close(c.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	var (
		attempt      int
		redirect     []string
		delay        time.Duration
		expiredTries int
		// resumeAt is the room of a session that just dropped on its own
		// (EOF, reset): it holds the session for a flash resume, so it is
		// asked first, once, for a resume only (resume.go).
		resumeAt string
	)
	for {
		if delay > 0 && !sleep(ctx, delay) {
			return c.stopErr(ctx)
		}
		delay = 0
		eps := c.endpoints(ctx, redirect)
		attempts := resumeFirst(eps, resumeAt, redirect == nil && c.resumeToken() != "")
		resumeOnlyAt := -1
		if len(attempts) > len(eps) {
			resumeOnlyAt = 0
		}
		redirect, resumeAt = nil, ""
		skip := ""
		if len(eps) == 0 {
			c.log.Warn("sdk: no endpoints to try")
		}
		var roundErr error
		connected := false
	round:
		for i, ep := range attempts {
			if ctx.Err() != nil {
				return c.stopErr(ctx)
			}
			resumeOnly := i == resumeOnlyAt
			if ep == skip {
				continue
			}
			established, err := c.runSession(ctx, ep, resumeOnly)
			if ctx.Err() != nil {
				return c.stopErr(ctx)
			}
			if established {
				connected = true
				attempt, expiredTries = 0, 0
			}
			var se *ServerError
			var re *redirectError
			switch {
			case errors.As(err, &re):
				c.log.Info("sdk: redirected", "from", ep, "to", re.endpoints, "backoff_ms", re.backoffMs, "reason", re.reason)
				redirect = re.endpoints
				delay = redirectDelay(re.backoffMs, c.cfg.BackoffMin)
				break round
			case errors.As(err, &se) && se.fatal():
				return err
			case errors.Is(err, errTokenFunc):
				c.log.Warn("sdk: cannot get a token", "err", err)
				roundErr = err
				break round
			case errors.As(err, &se) && se.Code == protocol.CodeTokenExpired && !established:
				if c.cfg.TokenFunc == nil {
					return fmt.Errorf("sdk: token expired and Config.TokenFunc is not set: %w", err)
				}
				expiredTries++
				c.log.Info("sdk: token expired; fetching a new one", "endpoint", ep)
				if expiredTries == 1 {
					// A fresh token usually fixes it at once; only back off if not.
					delay = time.Millisecond
				}
				roundErr = err
				break round
			case resumeOnly && !established:
				// RESUME_MISS: the room is up but no longer holds the
				// session; a full login follows in the dispatcher's order.
				// Anything else (most likely no answer in time): the room
				// may be hung, so this round logs in elsewhere.
				if !errors.As(err, &se) || se.Code != protocol.CodeResumeMiss {
					c.log.Info("sdk: resume failed; logging in elsewhere", "endpoint", ep, "err", err)
					c.noteFailed(ep)
					skip = ep
				}
			case established:
				c.log.Info("sdk: disconnected", "endpoint", ep, "err", err)
				if errors.Is(err, errSilent) {
					c.noteFailed(ep)
				} else if !errors.As(err, &se) {
					resumeAt = ep
				}
				break round
			default:
				c.log.Warn("sdk: connect failed", "endpoint", ep, "err", err)
				c.noteFailed(ep)
				roundErr = err
			}
		}
		if delay == 0 {
			delay = backoff(attempt, c.cfg.BackoffMin, c.cfg.BackoffMax)
			if !connected {
				attempt++
			}
		}
		if roundErr != nil {
			c.log.Debug("sdk: retrying", "in", delay, "last_err", roundErr)
		}
	}
}

func (c *Client) stopErr(ctx context.Context) error {
	select {
	case <-c.closing:
		return ErrClosed
	default:
		return ctx.Err()
	}
}

// Close stops Run, flushing pending ACKs within ctx's deadline, and waits
// for Run to return or ctx to end.
func (c *Client) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		dl, ok := ctx.Deadline()
		if !ok {
			dl = time.Now().Add(shutdownFlush)
		}
		c.closeMu.Lock()
		c.closeDeadline = dl
		c.closeMu.Unlock()
		close(c.closing)
	})
	if !c.running.Load() {
		return nil
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flushDeadline is how long a closing session may spend writing its last ACKs.
func (c *Client) flushDeadline() time.Time {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if !c.closeDeadline.IsZero() {
		return c.closeDeadline
	}
	return time.Now().Add(shutdownFlush)
}

func (c *Client) nextSeq() uint32 {
	for {
		if s := c.seq.Add(1); s != 0 {
			return s
		}
	}
}

func (c *Client) token(ctx context.Context) (string, error) {
	if c.cfg.TokenFunc == nil {
		return c.cfg.Token, nil
	}
	tok, err := c.cfg.TokenFunc(ctx)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errTokenFunc, err)
	}
	return tok, nil
}

func (c *Client) current() *session {
	c.sessMu.Lock()
	defer c.sessMu.Unlock()
	return c.sess
}

func (c *Client) setCurrent(s *session) {
	c.sessMu.Lock()
	c.sess = s
	c.sessMu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

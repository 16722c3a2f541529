package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/pushgw/pushgw/pkg/discovery"
	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// Paced drain: clients are redirected in batches, at most -drain-rate per
// second, so a room taken out of service does not send all its clients to
// the dispatcher and the other rooms in the same second (each reconnect is
// a dispatcher call, a login, a register write and a saver read).
const (
	// defaultDrainRate suits a 2-core room beside its peers: 200
	// reconnects/s is a few percent of what a room accepts.
	defaultDrainRate = 200
	// defaultDrainDeadline bounds a drain requested through etcd: 100k
	// clients at the default rate take 500 s.
	defaultDrainDeadline = 10 * time.Minute
	minDrainDeadline     = time.Second
	maxDrainDeadline     = time.Duration(discovery.MaxDrainDeadlineSec) * time.Second
	// drainTick is the target gap between two batches: batches are
	// rate x 100 ms, so a fast drain is not one syscall burst per client
	// and a slow one still moves a client at a time.
	drainTick = 100 * time.Millisecond
	// drainTermWindow bounds the pacing of a SIGTERM drain: the rate is
	// raised so every client is told within it, and the whole shutdown
	// still fits the ~10 s stop budget (systemd TimeoutStopSec=20, k8s
	// terminationGracePeriodSeconds=30).
	drainTermWindow = 3 * time.Second
	// drainTailWait is the least time redirected clients get to close
	// after the last batch before the rest are cut.
	drainTailWait = 2 * time.Second
	// redirectSpreadMin is the least spread of REDIRECT back-off hints
	// (100..1000 ms, as before pacing).
	redirectSpreadMin = time.Duration(redirectBackoffMax-redirectBackoffMin) * time.Millisecond
	// drainMarkTimeout bounds each etcd call of the drain mark watch.
	drainMarkTimeout = 3 * time.Second
	drainRelistEvery = time.Second
)

// drainConfig is the room's drain flags.
type drainConfig struct {
	rate     int
	deadline time.Duration
}

func (c *drainConfig) bind(fs *flag.FlagSet) {
	fs.IntVar(&c.rate, "drain-rate", defaultDrainRate, "clients redirected per second while draining (a drain request's rate overrides it; SIGTERM raises it so every client is told within 3 s)")
	fs.DurationVar(&c.deadline, "drain-deadline", defaultDrainDeadline, "longest a drain requested through etcd paces; then the clients left are redirected at once and the room exits (a request's deadline overrides it)")
}

// validate fills zero values (configs built without flags) and checks
// bounds.
func (c *drainConfig) validate() error {
	if c.rate == 0 {
		c.rate = defaultDrainRate
	}
	if c.deadline == 0 {
		c.deadline = defaultDrainDeadline
	}
	if c.rate < 1 || c.rate > discovery.MaxDrainRate {
		return fmt.Errorf("-drain-rate %d: want 1..%d", c.rate, discovery.MaxDrainRate)
	}
	if c.deadline < minDrainDeadline || c.deadline > maxDrainDeadline {
		return fmt.Errorf("-drain-deadline %v: want %v..%v", c.deadline, minDrainDeadline, maxDrainDeadline)
	}
	return nil
}

// pacePlan turns a rate into a batch size and the gap between batches:
// batch / every == rate, every close to drainTick.
func pacePlan(rate int) (batch int, every time.Duration) {
	rate = max(rate, 1)
	batch = max(1, int((int64(rate)*int64(drainTick)+int64(time.Second)-1)/int64(time.Second)))
	// Rounded up, so the plan is never faster than the rate.
	every = time.Duration((int64(batch)*int64(time.Second) + int64(rate) - 1) / int64(rate))
	return batch, every
}

// pace calls send on items in batches: at most batch successful sends,
// then a wait of every (both from pacePlan(rate()), read again before each
// batch so a drain's rate can change while it runs). A send that returns
// false (the connection was already closing) does not count against the
// rate. Over any span T after the first batch at most batch + rate*T items
// are sent. It returns how many sends succeeded; it stops early when ctx
// ends or wait reports it did.
func pace[T any](ctx context.Context, items []T, rate func() int, wait func(context.Context, time.Duration) bool, send func(item T, every time.Duration) bool) int {
	sent := 0
	for i := 0; i < len(items); {
		if ctx.Err() != nil {
			return sent
		}
		batch, every := pacePlan(rate())
		for n := 0; n < batch && i < len(items); i++ {
			if send(items[i], every) {
				n++
				sent++
			}
		}
		if i < len(items) && !wait(ctx, every) {
			return sent
		}
	}
	return sent
}

// sleepFor waits d or until ctx ends; false when ctx ended.
func sleepFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// redirectBackoff is the back-off hint of one REDIRECT in a batch sent
// every `every`: uniform over [100 ms, 100 ms + max(every, 900 ms)], so the
// clients of one batch reconnect spread over at least the gap to the next
// batch rather than together.
func redirectBackoff(every time.Duration) uint32 {
	spread := max(every, redirectSpreadMin)
	return uint32(redirectBackoffMin + rand.Int64N(spread.Milliseconds()+1))
}

// pacedRedirectFrame is a REDIRECT (no endpoints: ask the dispatcher, which
// no longer offers this room) with a back-off hint for a batch gap.
func pacedRedirectFrame(every time.Duration, reason string) []byte {
	b, _ := protocol.AppendMessage(nil, protocol.OpRedirect, 0, &clientpb.Redirect{
		BackoffMs: redirectBackoff(every),
		Reason:    reason,
	})
	return b
}

// Reasons told in REDIRECT.
const (
	redirectReasonShutdown = "server shutting down"
	redirectReasonDrain    = "room draining"
)

// snapshotSessions lists the open connections. Callers set r.draining
// first: a connection opened later is redirected by OnOpen itself.
func (r *room) snapshotSessions() []*session {
	list := make([]*session, 0, r.conns.Load())
	r.hub.Range(func(ss *session) { list = append(list, ss) })
	return list
}

// redirectPaced redirects the open connections at rate() per second and
// returns how many it told; onSent runs after each one told.
func (r *room) redirectPaced(ctx context.Context, rate func() int, reason string, onSent func()) int {
	return pace(ctx, r.snapshotSessions(), rate, sleepFor, func(ss *session, every time.Duration) bool {
		ss.setCloseReason(closeDrained)
		if !ss.c.CloseWith(pacedRedirectFrame(every, reason)) {
			return false
		}
		r.m.frameOut(protocol.OpRedirect)
		if onSent != nil {
			onSent()
		}
		return true
	})
}

// termRate is the rate of a SIGTERM drain of n connections: the
// configured one, raised so the last batch goes within drainTermWindow.
func termRate(configured int, n int64) int {
	need := (n*int64(time.Second) + int64(drainTermWindow) - 1) / int64(drainTermWindow)
	return int(min(max(int64(configured), need), discovery.MaxDrainRate*10))
}

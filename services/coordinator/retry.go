package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Back-off between attempts of one uplink: base, doubled each time, capped,
// each wait drawn uniformly from [d/2, d) so that the calls of many uplinks
// that failed together do not come back in step.
const (
	retryBaseDelay = 100 * time.Millisecond
	retryMaxDelay  = 800 * time.Millisecond
	// replyMargin is kept free at the end of the caller's deadline so that
	// the reply (or the failure) still reaches the room before it gives up.
	replyMargin = 250 * time.Millisecond
	// minAttemptTime: an attempt with less time than this left is not
	// started; it could only time out.
	minAttemptTime = 50 * time.Millisecond
)

// retryPolicy is how one uplink is delivered: attempts at most, all of them
// (waits included) within budget and within the caller's deadline.
type retryPolicy struct {
	attempts int
	budget   time.Duration
}

// backoff is the wait before attempt n+1 (n ≥ 1 attempts made so far).
func backoff(n int) time.Duration {
	d := retryBaseDelay << (n - 1)
	if d > retryMaxDelay || d <= 0 {
		d = retryMaxDelay
	}
	return d/2 + rand.N(d/2)
}

// deliverResult is what one uplink's delivery came to.
type deliverResult struct {
	eventID  string
	payload  []byte
	err      error
	attempts int
}

// deliver posts the uplink to the app's webhook, retrying 5xx, timeouts and
// refused connections with back-off, and returns the first success or the
// last failure. The event id is the same in every attempt. ctx carries the
// uplink's budget (budgetContext).
func (s *server) deliver(ctx context.Context, app appconfig.App, req *internalpb.UplinkRequest) deliverResult {
	res := deliverResult{eventID: newEventID()}
	body := uplinkBody(res.eventID, req)
	for {
		res.attempts++
		start := time.Now()
		s.m.inflight.Inc()
		res.payload, res.err = s.hook.attempt(ctx, app, res.eventID, body)
		s.m.inflight.Dec()
		s.m.duration.Observe(time.Since(start).Seconds())
		s.m.attempts.WithLabelValues(attemptResult(res.err)).Inc()
		var we *errWebhook
		if res.err == nil || !errors.As(res.err, &we) || !we.retry || res.attempts >= s.retry.attempts {
			return res
		}
		wait := backoff(res.attempts)
		if dl, _ := ctx.Deadline(); time.Until(dl) < wait+minAttemptTime {
			return res
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res
		case <-t.C:
		}
	}
}

// budgetContext bounds one uplink's delivery by the retry budget and by the
// caller's own deadline less replyMargin.
func (s *server) budgetContext(ctx context.Context) (context.Context, context.CancelFunc) {
	budget := s.retry.budget
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) - replyMargin; left < budget {
			budget = left
		}
	}
	return context.WithTimeout(ctx, budget)
}

func attemptResult(err error) string {
	var we *errWebhook
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &we) && we.retry:
		return "retryable"
	default:
		return "failed"
	}
}

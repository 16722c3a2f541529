package main

import (
	"time"
)

// A login policy check whose lookup fails (register down or restarting)
// is tried again in the background, so the older login is still kicked
// once register answers: doubling back-off from policyRetryFirst up to
// policyRetryMax, policyRetryAttempts lookups in all (about a minute),
// and never for a session that has closed meanwhile. A retry waits on a
// timer, not on a pool worker, so an outage does not fill the pool; at
// most policyRetriesHeld wait at once, beyond that the check is given up.
const (
	policyRetryFirst    = 250 * time.Millisecond
	policyRetryMax      = 5 * time.Second
	policyRetryAttempts = 16
	policyRetriesHeld   = 8 << 10
)

// policyRetryWait is the back-off before lookup try+1 (try counts from 0).
func policyRetryWait(try int) time.Duration {
	d := policyRetryFirst
	for i := 0; i < try && d < policyRetryMax; i++ {
		d *= 2
	}
	return min(d, policyRetryMax)
}

// retryLoginPolicy schedules the policy check of s again after its lookup
// try failed with err, or gives it up (counted in
// pushgw_room_login_policy_failures_total{reason="lookup"}).
func (r *room) retryLoginPolicy(s *session, policy string, try int, err error) {
	ma := r.multi
	if try+1 >= policyRetryAttempts || s.has(flagClosed) || r.connCtx.Err() != nil {
		ma.m.policyFailure.WithLabelValues("lookup").Inc()
		r.log.Warn("room: login policy lookup failed; check given up", "app", s.key.app, "conn", s.id, "tries", try+1, "err", err)
		return
	}
	if ma.retrying.Add(1) > policyRetriesHeld {
		ma.retrying.Add(-1)
		ma.m.policyFailure.WithLabelValues("shed").Inc()
		r.log.Warn("room: login policy retry shed; too many waiting", "app", s.key.app, "conn", s.id, "err", err)
		return
	}
	ma.m.policyRetries.Inc()
	if try == 0 {
		r.log.Info("room: login policy lookup failed; retrying in the background", "app", s.key.app, "conn", s.id, "err", err)
	}
	time.AfterFunc(policyRetryWait(try), func() {
		ma.retrying.Add(-1)
		if s.has(flagClosed) || r.connCtx.Err() != nil {
			return // the session (or the room) ended: nothing to enforce
		}
		if err := ma.work.Submit(func() { r.applyLoginPolicy(s, policy, try+1) }); err != nil {
			ma.m.policyFailure.WithLabelValues("shed").Inc()
			r.log.Warn("room: login policy retry shed; pool full", "app", s.key.app, "conn", s.id)
		}
	})
}

package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// Before each retry round the retrier asks saver, in one States call, what
// became of the messages it is about to push again: since their live
// delivery failed, a message may have been collapsed by a newer one with
// its collapse key (pushing it would show the client an outdated message
// it must never see), acked (the client got it by its login pull), expired
// or dead. Only those still waiting for an ack are pushed.
const (
	// retryCheckTimeout bounds the States call of one round: the check runs
	// on the retrier's own loop, so a saver that hangs delays the next
	// round by at most this, and never blocks a push request.
	retryCheckTimeout = time.Second
	// retryCheckMax is saver's bound on one States call (maxStatesRefs);
	// a round holds at most deliveryBatchMax messages, below it, so one
	// call per round always suffices.
	retryCheckMax = 1000
)

// Reasons of pushgw_center_delivery_retries_skipped_total.
const (
	skipCollapsed = "collapsed"
	skipAcked     = "acked"
	skipExpired   = "expired"
	skipDead      = "dead"
	skipUnknown   = "unknown"
)

// retryStates asks saver for the state of msgs; states[i] answers msgs[i].
type retryStates func(ctx context.Context, msgs []*internalpb.Message) ([]internalpb.MessageState, error)

// saverStates is retryStates against saver's States RPC.
func (s *Server) saverStates(ctx context.Context, msgs []*internalpb.Message) ([]internalpb.MessageState, error) {
	refs := make([]*internalpb.MessageRef, len(msgs))
	for i, m := range msgs {
		refs[i] = &internalpb.MessageRef{App: m.GetApp(), User: m.GetUser(), Id: m.GetId()}
	}
	cctx, cancel := context.WithTimeout(ctx, retryCheckTimeout)
	defer cancel()
	r, err := s.saver.States(cctx, &internalpb.StatesRequest{Messages: refs})
	if err != nil {
		return nil, fmt.Errorf("saver: states of %d messages: %w", len(refs), err)
	}
	if len(r.GetStates()) != len(refs) {
		return nil, fmt.Errorf("saver: states of %d messages: %d answers", len(refs), len(r.GetStates()))
	}
	return r.GetStates(), nil
}

// skipReason says why a message in state st is not pushed again, or ""
// when it still waits for an ack and is pushed.
func skipReason(st internalpb.MessageState) string {
	switch st {
	case internalpb.MessageState_MESSAGE_STATE_STORED, internalpb.MessageState_MESSAGE_STATE_DELIVERED:
		return ""
	case internalpb.MessageState_MESSAGE_STATE_COLLAPSED:
		// A newer message with its collapse key replaced it: the client
		// must only ever see the newer one (which has its own delivery).
		return skipCollapsed
	case internalpb.MessageState_MESSAGE_STATE_ACKED:
		// The client has it (its login pull got there first).
		return skipAcked
	case internalpb.MessageState_MESSAGE_STATE_EXPIRED:
		// Past its TTL: never delivered after that.
		return skipExpired
	case internalpb.MessageState_MESSAGE_STATE_DEAD:
		// Saver gave it up after the maximum deliveries; pushing it now
		// would deliver it past that bound.
		return skipDead
	default:
		// Saver has no record of it. Every message the retrier holds was
		// committed before its first delivery, and an outcome is kept far
		// longer (-outcome-retention) than the retrier's 12 s, so it
		// finished long ago (or a saver of another version answered
		// something unknown): nothing is waiting for it, and the sweep
		// would still find a message that did wait.
		return skipUnknown
	}
}

// check drops from items what need not be pushed again and returns the
// rest. Expired messages are dropped without asking (expires_ms is on the
// message). ok is false when saver could not answer: see retry.
func (r *retrier) check(ctx context.Context, items []retryItem, now time.Time) (keep []retryItem, ok bool) {
	keep = items[:0]
	for _, it := range items {
		if e := it.m.GetExpiresMs(); e > 0 && e <= now.UnixMilli() {
			r.m.retrySkipped.WithLabelValues(skipExpired).Inc()
			continue
		}
		keep = append(keep, it)
	}
	if r.states == nil || len(keep) == 0 {
		return keep, true
	}
	msgs := make([]*internalpb.Message, len(keep))
	for i, it := range keep {
		msgs[i] = it.m
	}
	states, err := r.states(ctx, msgs)
	if status.Code(err) == codes.Unimplemented {
		// A saver older than States (a rolling upgrade): push unchecked,
		// as before it existed, rather than hold every retry until the
		// sweep takes over.
		r.m.retryCheckFailed.WithLabelValues("unimplemented").Inc()
		return keep, true
	}
	if err != nil {
		if ctx.Err() == nil {
			r.m.retryCheckFailed.WithLabelValues("unavailable").Inc()
			r.log.Debug("center: retry state check failed; trying again next round", "count", len(keep), "err", err)
		}
		return keep, false
	}
	out := keep[:0]
	for i, it := range keep {
		if why := skipReason(states[i]); why != "" {
			r.m.retrySkipped.WithLabelValues(why).Inc()
			continue
		}
		out = append(out, it)
	}
	return out, true
}

package main

import (
	"math"
	"time"
)

// frameRate is the room's per-connection inbound frame limit: a token
// bucket of burst frames refilled at perSecond frames a second. Only
// frames count, not bytes: -max-frame already bounds each frame, and every
// frame costs the room a decode, a dispatch and often a reply or a call to
// a peer, whatever its size.
//
// It is kept in GCRA form (the "virtual scheduling" token bucket): each
// connection stores one int64, the theoretical arrival time of its next
// frame, instead of a token count and a refill timestamp. That is 8 bytes
// per connection, which matters at a room's connection counts.
type frameRate struct {
	// interval is the time one frame's token takes to refill; 0 disables
	// the limit.
	interval int64
	// tolerance is how far ahead of now the arrival time may run: burst-1
	// intervals, so a full bucket admits exactly burst frames back to back.
	tolerance int64
}

// newFrameRate returns the limit for perSecond frames a second with bursts
// of burst; perSecond <= 0 means unlimited.
func newFrameRate(perSecond float64, burst int) frameRate {
	if perSecond <= 0 || burst < 1 {
		return frameRate{}
	}
	iv := int64(math.Max(1, math.Round(float64(time.Second)/perSecond)))
	return frameRate{interval: iv, tolerance: int64(burst-1) * iv}
}

// frameLimiter is one connection's state: the theoretical arrival time of
// its next frame in monoNanos. Its zero value is a full bucket. Only the
// connection's reader touches it, so it needs no lock.
type frameLimiter struct {
	tat int64
}

// allow takes one token at now (monoNanos) and reports whether the frame
// is within the limit. A refused frame takes nothing.
func (r frameRate) allow(l *frameLimiter, now int64) bool {
	if r.interval == 0 {
		return true
	}
	tat := max(l.tat, now)
	if tat-now > r.tolerance {
		return false
	}
	l.tat = tat + r.interval
	return true
}

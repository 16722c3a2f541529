package main

import "time"

// monoEpoch anchors the room's internal clock. Deadlines and rate-limit
// state are kept as nanoseconds since it, computed from the monotonic
// reading of time.Time, so an NTP step of the wall clock neither expires
// every connection at once (a jump forward) nor keeps dead ones or
// rate-limits live ones (a jump back). It is set once at start and never
// written again.
var monoEpoch = time.Now()

// monoNanos returns t as nanoseconds since monoEpoch (monotonic when t
// carries a monotonic reading, as every time.Now() and ticker value does).
func monoNanos(t time.Time) int64 { return int64(t.Sub(monoEpoch)) }

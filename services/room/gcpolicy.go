package main

// The room's GC target (-gc-percent, service.GCConfig). An idle room's RSS
// per connection is its live heap plus what the collector lets pile up
// between cycles: with Go's default GOGC of 100 a burst of logins ends with
// up to a live heap's worth of garbage, which leaves partly used spans
// behind (heap in use that holds no live object) and free memory the
// scavenger returns slowly. A lower target trades GC CPU (cycles come twice
// as often at 50 while the room allocates) for that memory; an idle room
// allocates little, so the cost lands on bursts and push load
// (docs/BENCHMARKS.md, "Idle memory after the session diet").
const (
	defaultGCPercent = 50
	gcPercentWhy     = "lower: less idle RSS per connection, more GC CPU under load"
)

package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
)

// The room's GC target. An idle room's RSS per connection is its live heap
// plus what the collector lets pile up between cycles: with Go's default
// GOGC of 100 a burst of logins ends with up to a live heap's worth of
// garbage, which leaves partly used spans behind (heap in use that holds
// no live object) and free memory the scavenger returns slowly. A lower
// target trades GC CPU (cycles come twice as often at 50 while the room
// allocates) for that memory; an idle room allocates little, so the cost
// lands on bursts and push load (docs/BENCHMARKS.md, "Idle memory after the
// session diet").
const (
	defaultGCPercent = 50
	minGCPercent     = 10
	maxGCPercent     = 1000
)

// gcConfig is the room's -gc-percent flag.
type gcConfig struct {
	percent int
}

func (c *gcConfig) bind(fs *flag.FlagSet) {
	fs.IntVar(&c.percent, "gc-percent", defaultGCPercent,
		"GC target percentage (as GOGC; lower: less idle RSS per connection, more GC CPU under load); a GOGC environment variable overrides it")
}

func (c *gcConfig) validate() error {
	if c.percent == 0 { // a config built without flags
		c.percent = defaultGCPercent
	}
	if c.percent < minGCPercent || c.percent > maxGCPercent {
		return fmt.Errorf("-gc-percent %d: want %d..%d", c.percent, minGCPercent, maxGCPercent)
	}
	return nil
}

// apply sets the process's GC target unless GOGC is set: an operator's
// environment wins over the flag's default.
func (c *gcConfig) apply(log *slog.Logger) {
	if env, ok := os.LookupEnv("GOGC"); ok {
		log.Info("room: GOGC set in the environment; -gc-percent ignored", "GOGC", env)
		return
	}
	debug.SetGCPercent(c.percent)
}
